// The configuration's string formats as ajv format definitions. One module shared by the validator
// compiled at run time and the standalone one generated at build time, which requires it by this
// file name (see standaloneValidatorSource in validator.ts).
import { CONFIG_FORMATS } from './formats';

interface FormatValidator {
  readonly type: 'string';
  readonly validate: (value: string) => boolean;
}

// Emptiness is minLength's job: fields where "" means "automatic" share the formats.
export const CONFIG_FORMAT_VALIDATORS: Readonly<Record<string, FormatValidator>> = Object.freeze(
  Object.fromEntries(
    Object.entries(CONFIG_FORMATS).map(([name, f]) => [
      name,
      { type: 'string' as const, validate: (v: string) => v === '' || f.check(v) === undefined },
    ]),
  ),
);
