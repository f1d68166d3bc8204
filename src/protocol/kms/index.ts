// Public API of the KMS message codecs (PROTOCOL.md §4–§6): the four message functions, the ePID
// shape check, and the cryptographic primitives for tests and tools.
export { decodeKmsRequest, encodeKmsResponse, encodeKmsRequest, verifyKmsResponse, requestLengthOf } from './kms-message';
export { isWellFormedEpid } from './epid-shape';
export type { ResponseCheck } from './response-checks';
export { RijndaelCipher, type BlockCipher, type RijndaelOptions } from './rijndael';
export { V4_CIPHER, V5_CIPHER, V6_CIPHER, encryptBlockV4, encryptBlockV6, decryptBlockV6 } from './ciphers';
export { cbcEncrypt, cbcDecrypt, cbcEncryptInPlace, cbcDecryptInPlace, pad, paddingLength, unpaddedLength, writePadding } from './cbc';
export { v4Mac, writeV4Mac } from './v4-mac';
export { v6HmacKey, v6Hmac, v6TimeSlot, type HmacTolerance } from './v6-hmac-key';
export { pidSizeOf } from './response-base';
export * from './constants';
export type * from './types';
