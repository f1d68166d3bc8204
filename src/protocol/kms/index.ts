// Public API of the KMS message codecs (PROTOCOL.md §4–§6): the four message functions, the ePID
// shape check, and the cryptographic primitives for tests and tools.
export { decodeKmsRequest, encodeKmsResponse, encodeKmsRequest, verifyKmsResponse } from './kms-message';
export { isWellFormedEpid } from './epid-shape';
export { RijndaelCipher } from './rijndael';
export { V4_CIPHER, V5_CIPHER, V6_CIPHER, encryptBlockV4, encryptBlockV6, decryptBlockV6 } from './ciphers';
export { cbcEncrypt, cbcDecrypt, cbcEncryptInPlace, cbcDecryptInPlace, pad, unpaddedLength } from './cbc';
export { v4Mac } from './v4-mac';
export { v6HmacKey, v6Hmac, v6TimeSlot } from './v6-hmac-key';
export * from './constants';
export type * from './types';
