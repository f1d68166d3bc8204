#!/usr/bin/env node
// `npm run build`'s step after tsc (and `npm start`'s after its incremental compile): writes the
// configuration validator as a standalone module into dist/src/config/, so the appliance checks
// its configuration without loading ajv's compiler (src/config/validator.ts says why).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const { STANDALONE_VALIDATOR_FILE, standaloneValidatorSource } = require(path.join(root, 'dist', 'src', 'config', 'validator.js'));
const source = standaloneValidatorSource();
// Written aside and renamed: a server starting meanwhile reads the old module or the new one, never half of one.
const partial = `${STANDALONE_VALIDATOR_FILE}.${process.pid}.tmp`;
fs.writeFileSync(partial, source);
fs.renameSync(partial, STANDALONE_VALIDATOR_FILE);
