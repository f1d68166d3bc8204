// A DNS log that keeps every line for the test to read.
import type { DnsLog } from '../../src/dns/dns-responder';

export interface LogLine {
  level: string;
  obj: Record<string, unknown>;
  msg?: string;
}

export function captureLog(): { log: DnsLog; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}
