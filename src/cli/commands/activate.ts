// `kms-appliance activate`: a verifying client. Binds and calls like a Windows client, checks every
// response the way one does, and prints what the client would conclude — or the HRESULT a Windows
// client would show, with its meaning and what to change.
import { parseArgs } from 'node:util';
import { EXIT, usageError, type Command } from '../command';
import { KmsError, describeHresult, formatHresult } from '../../errors';
import { loadCatalog } from '../../catalog/load';
import { activate } from '../../client/kms-client';
import { chooseProduct, listProducts } from '../../client/product-choice';
import type { KmsVersion } from '../../protocol/kms/types';

const HELP = `Usage: kms-appliance activate --host H [--port P] --product NAME|SKU-GUID [--protocol 4|5|6]
                              [--ndr64 on|off] [--btfn on|off] [--requests N] [--cmid GUID]
                              [--workstation NAME] [--timeout SECONDS] [--json]
       kms-appliance activate --list-products

Send activation requests to a KMS host like a Windows or Office client and verify every response
(decryption, MAC/HMAC, echoed fields, ePID form). Each request comes from a new machine id unless
--cmid is given, so it counts as a machine on the host.

Options:
  -H, --host H          KMS host name or address (required).
  -p, --port P          TCP port (default 1688).
  -P, --product NAME    Product name as in the catalogue ("Windows 10/11 Enterprise", "Office
                        LTSC Professional Plus 2021"), a unique part of one, or an Activation ID.
      --protocol 4|5|6  KMS protocol version (default: the product's own).
      --ndr64 on|off    Offer NDR64 in bind (default on, like 64-bit Windows).
      --btfn on|off     Offer bind-time feature negotiation (default on).
  -n, --requests N      Requests on one connection (default 1).
      --cmid GUID       Client machine id for every request.
      --workstation N   Workstation name sent (default kms-appliance-check).
      --timeout S       Seconds to wait for connect and each answer (default 5).
      --json            Print the results as JSON.
      --list-products   List the volume products of the catalogue.
  -h, --help            Show this help.

Exit codes: 0 every request served and verified, 1 refused / unreachable / response failed a
client check, 2 usage error.

Example:
  kms-appliance activate --host 127.0.0.1 --product "Windows 10/11 Enterprise" --requests 3
`;

type Values = {
  host?: string; port?: string; product?: string; protocol?: string; ndr64?: string; btfn?: string; requests?: string;
  cmid?: string; workstation?: string; timeout?: string; json?: boolean; 'list-products'?: boolean; help?: boolean;
};

export const command: Command = {
  name: 'activate',
  summary: 'send verified activation requests to a KMS host, like a Windows client',
  help: HELP,
  async run(argv, io) {
    let v: Values;
    try {
      v = parseArgs({
        args: [...argv],
        strict: true,
        options: {
          host: { type: 'string', short: 'H' }, port: { type: 'string', short: 'p' }, product: { type: 'string', short: 'P' },
          protocol: { type: 'string' }, ndr64: { type: 'string' }, btfn: { type: 'string' }, requests: { type: 'string', short: 'n' },
          cmid: { type: 'string' }, workstation: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' },
          'list-products': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        },
      }).values;
    } catch (err) {
      return usageError(io, 'activate', (err as Error).message);
    }
    if (v.help) {
      io.stdout.write(HELP);
      return EXIT.OK;
    }
    const catalog = loadCatalog();
    if (v['list-products']) {
      for (const p of listProducts(catalog)) io.stdout.write(`${p.name}\t${p.group}\tv${p.protocol}\t${p.activationId}\n`);
      return EXIT.OK;
    }
    if (!v.host) return usageError(io, 'activate', '--host is required');
    if (!v.product) return usageError(io, 'activate', '--product is required (kms-appliance activate --list-products shows them)');
    const port = intOption(v.port ?? '1688', 1, 65535);
    const requests = intOption(v.requests ?? '1', 1, 10000);
    const timeout = intOption(v.timeout ?? '5', 1, 600);
    const protocol = v.protocol === undefined ? undefined : intOption(v.protocol, 4, 6);
    const ndr64 = onOff(v.ndr64 ?? 'on');
    const btfn = onOff(v.btfn ?? 'on');
    if (port === undefined) return usageError(io, 'activate', '--port must be 1..65535');
    if (requests === undefined) return usageError(io, 'activate', '--requests must be 1..10000');
    if (timeout === undefined) return usageError(io, 'activate', '--timeout must be 1..600 seconds');
    if (v.protocol !== undefined && protocol === undefined) return usageError(io, 'activate', '--protocol must be 4, 5 or 6');
    if (ndr64 === undefined || btfn === undefined) return usageError(io, 'activate', '--ndr64 and --btfn take on or off');
    let product;
    try {
      product = chooseProduct(catalog, v.product);
    } catch (err) {
      return usageError(io, 'activate', (err as Error).message);
    }
    try {
      const replies = await activate({
        host: v.host, port, product, requests, ndr64, btfn, timeoutMs: timeout * 1000,
        ...(protocol ? { protocol: protocol as KmsVersion } : {}),
        ...(v.cmid ? { cmid: v.cmid.toLowerCase() } : {}),
        ...(v.workstation ? { workstation: v.workstation } : {}),
      });
      if (v.json) {
        io.stdout.write(JSON.stringify(replies.map((r) => ({
          cmid: r.cmid, hresult: formatHresult(r.hresult), activated: r.activated, warnings: r.warnings,
          ...(r.verified ? { version: r.verified.version, epid: r.verified.base.epid, count: r.verified.base.currentCount,
            activationIntervalMinutes: r.verified.base.activationInterval, renewalIntervalMinutes: r.verified.base.renewalInterval,
            ...(r.verified.hwid ? { hwid: r.verified.hwid.toString('hex') } : {}) } : {}),
        })), null, 2) + '\n');
      } else {
        io.stdout.write(`${product.name} → ${v.host.includes(':') ? `[${v.host}]` : v.host}:${port}, KMS v${protocol ?? product.protocol}, NDR64 ${ndr64 ? 'on' : 'off'}, BTFN ${btfn ? 'on' : 'off'}\n`);
        for (const [i, r] of replies.entries()) {
          for (const w of r.warnings) io.stdout.write(`  warning: ${w}\n`);
          if (r.verified) {
            const b = r.verified.base;
            io.stdout.write(
              `#${i + 1} served (response verified): ePID ${b.epid}, count ${b.currentCount} of ${product.requiredClientCount} needed` +
                ` → ${r.activated ? 'client activates' : `client stays unactivated (0xC004F038: ${product.requiredClientCount - b.currentCount} more machines needed)`}` +
                `, activation interval ${b.activationInterval} min, renewal interval ${b.renewalInterval} min` +
                (r.verified.hwid ? `, HwId ${r.verified.hwid.toString('hex').toUpperCase()}` : '') + '\n',
            );
          } else {
            io.stdout.write(`#${i + 1} refused: ${formatHresult(r.hresult)} ${describeHresult(r.hresult) ?? ''}\n`);
          }
        }
      }
      return replies.every((r) => r.hresult === 0) ? EXIT.OK : EXIT.FAILURE;
    } catch (err) {
      if (!(err instanceof KmsError)) throw err;
      const hr = err.spec.hresult;
      io.stderr.write(`kms-appliance activate: ${err.message}\n  ${hr !== undefined ? `a Windows client would show ${formatHresult(hr)} (${describeHresult(hr) ?? ''}); ` : ''}${err.spec.explain} [${err.code}]\n`);
      return EXIT.FAILURE;
    }
  },
};


function intOption(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

function onOff(text: string): boolean | undefined {
  return text === 'on' ? true : text === 'off' ? false : undefined;
}
