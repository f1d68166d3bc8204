// The ConfigError a call throws; anything else (or nothing) fails the test.
import { ConfigError } from '../../src/errors';

export function configFailure(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
