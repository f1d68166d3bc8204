// The few logger methods the store uses; a pino logger fits as is, and tests pass a recorder.

export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const SILENT_LOG: StoreLog = Object.freeze({
  info(): void {},
  warn(): void {},
  error(): void {},
});
