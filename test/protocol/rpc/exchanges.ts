// Test helper: the captured conversations in test/fixtures/exchanges.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../paths';

export interface CapturedPdu {
  readonly connection: number;
  readonly dir: 'c2s' | 's2c';
  readonly ptype: string;
  readonly hex: string;
  readonly context_results?: readonly { context_id: number; result: number; reason: number }[];
}

interface CapturedCall {
  readonly transfer_syntax: 'NDR32' | 'NDR64';
  readonly kms_request_hex: string;
  readonly kms_response_hex: string;
  readonly hresult: string;
}

export interface Exchange {
  readonly name: string;
  readonly pdus: readonly CapturedPdu[];
  readonly decoded: { readonly calls: readonly CapturedCall[] };
}

const DIR = join(ROOT, 'test', 'fixtures', 'exchanges');

export const EXCHANGES: readonly Exchange[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ ...(JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Omit<Exchange, 'name'>), name: f }));

export function pduBytes(p: CapturedPdu): Buffer {
  return Buffer.from(p.hex, 'hex');
}
