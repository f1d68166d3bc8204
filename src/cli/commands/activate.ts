// `kms-appliance activate`: a verifying client. Binds and calls like a Windows client, checks every
// response the way one does, and prints what the client would conclude — or the HRESULT a Windows
// client would show, with its meaning and what to change.
import { EXIT, UsageProblem, defineCommand } from '../command';
import { formatCsv, type Column } from '../tabular';
import { inert, toJson } from '../terminal';
import { KmsError, describeHresult, formatHresult } from '../../errors';
import { loadCatalog } from '../../catalog/load';
import { clientProtocol, describeKnownProtocols } from '../../catalog/catalog';
import { activate } from '../../client/kms-client';
import { chooseProduct, listProducts } from '../../client/product-choice';
import type { KmsVersion } from '../../protocol/kms/types';
import { isGuid } from '../../protocol/guid';
import type { ActivationReply as KmsReply } from '../../client/kms-client';

const HELP = `Usage: kms-appliance activate --host H [--port P] --product NAME|SKU-GUID [--protocol 4|5|6]
                              [--ndr64 on|off] [--btfn on|off] [--requests N] [--cmid GUID]
                              [--workstation NAME] [--timeout SECONDS] [--format table|json|csv]
                              [--catalog FILE]
       kms-appliance activate --list-products [--catalog FILE]

Send activation requests to a KMS host like a Windows or Office client and verify every response
(decryption, MAC/HMAC, echoed fields, ePID form). Each request comes from a new machine id unless
--cmid is given, so it counts as a machine on the host.

Options:
  -H, --host H          KMS host name or address (required).
  -p, --port P          TCP port (default 1688).
  -P, --product NAME    Product or group name as people say it ("Windows 11 Enterprise", "Win 11
                        Ent", "Office 2021", "Server 2025 Standard") or an Activation ID.
      --protocol 4|5|6  KMS protocol version (default: the product's own).
      --ndr64 on|off    Offer NDR64 in bind (default on, like 64-bit Windows).
      --btfn on|off     Offer bind-time feature negotiation (default on).
  -n, --requests N      Requests on one connection (default 1).
      --cmid GUID       Client machine id for every request.
      --workstation N   Workstation name sent, 1-63 printable characters (default kms-appliance-check).
      --timeout S       Seconds to wait for connect and each answer (default 5).
  -f, --format F        table (default: one line per request), json or csv; --json = --format json.
      --list-products   List the volume products of the catalogue.
      --catalog FILE    Product catalogue to take products from (default: the shipped one; give
                        the file of catalog.file to try a product added there).
  -h, --help            Show this help.

Exit codes: 0 every request served and verified, 1 refused / unreachable / response failed a
client check, 2 usage error.

Example:
  kms-appliance activate --host 127.0.0.1 --product "Windows 10/11 Enterprise" --requests 3
`;

/** One row per request in JSON and CSV, with the same field names. */
const FIELDS: readonly Column<KmsReply>[] = [
  { header: 'cmid', value: (r) => r.cmid },
  { header: 'hresult', value: (r) => formatHresult(r.hresult) },
  { header: 'activated', value: (r) => r.activated },
  { header: 'version', value: (r) => r.verified?.version ?? null },
  { header: 'epid', value: (r) => r.verified?.base.epid ?? null },
  { header: 'count', value: (r) => r.verified?.base.currentCount ?? null },
  { header: 'activationIntervalMinutes', value: (r) => r.verified?.base.activationInterval ?? null },
  { header: 'renewalIntervalMinutes', value: (r) => r.verified?.base.renewalInterval ?? null },
  { header: 'hwid', value: (r) => r.verified?.hwid?.toString('hex') ?? null },
  { header: 'warnings', value: (r) => r.warnings.join('; ') },
];

export const command = defineCommand({
  name: 'activate',
  summary: 'send verified activation requests to a KMS host, like a Windows client',
  help: HELP,
  options: {
    host: { type: 'string', short: 'H' },
    port: { type: 'string', short: 'p' },
    product: { type: 'string', short: 'P' },
    protocol: { type: 'string' },
    ndr64: { type: 'string' },
    btfn: { type: 'string' },
    requests: { type: 'string', short: 'n' },
    cmid: { type: 'string' },
    workstation: { type: 'string' },
    timeout: { type: 'string' },
    'list-products': { type: 'boolean' },
    catalog: { type: 'string' },
  },
  formats: true,
  async run({ values: v, format, io }) {
    const catalog = loadCatalog(v.catalog);
    if (v['list-products']) {
      for (const p of listProducts(catalog)) {
        io.stdout.write(`${inert(p.name)}\t${inert(p.group)}\tv${inert(p.protocol)}\t${p.activationId}\n`);
      }
      return EXIT.OK;
    }
    if (!v.host) throw new UsageProblem('--host is required');
    if (v.host.length > 253 || /[\s\x00-\x1f\x7f]/.test(v.host))
      throw new UsageProblem(`--host "${inert(v.host.slice(0, 60))}" is not a host name or address`);
    if (!v.product) throw new UsageProblem('--product is required (kms-appliance activate --list-products shows them)');
    const port = intOption(v.port ?? '1688', 1, 65535);
    const requests = intOption(v.requests ?? '1', 1, 10000);
    const timeout = intOption(v.timeout ?? '5', 1, 600);
    const protocol = v.protocol === undefined ? undefined : intOption(v.protocol, 4, 6);
    const ndr64 = onOff(v.ndr64 ?? 'on');
    const btfn = onOff(v.btfn ?? 'on');
    if (port === undefined) throw new UsageProblem(`--port must be 1..65535, not "${inert(v.port ?? '')}"`);
    if (requests === undefined) throw new UsageProblem('--requests must be 1..10000');
    if (timeout === undefined) throw new UsageProblem('--timeout must be 1..600 seconds');
    if (v.protocol !== undefined && protocol === undefined) throw new UsageProblem('--protocol must be 4, 5 or 6');
    if (ndr64 === undefined || btfn === undefined) throw new UsageProblem('--ndr64 and --btfn take on or off');
    if (v.cmid !== undefined && !isGuid(v.cmid)) {
      throw new UsageProblem(`--cmid "${inert(v.cmid.slice(0, 60))}" is not a GUID (like 6f1d3c3e-9b0a-4c1e-8f2d-1a2b3c4d5e6f)`);
    }
    if (v.workstation !== undefined && !/^[\x21-\x7e][\x20-\x7e]{0,62}$/.test(v.workstation)) {
      throw new UsageProblem('--workstation must be 1 to 63 printable ASCII characters, not starting with a space');
    }
    const product = chooseProduct(catalog, v.product);
    const group = catalog.kmsGroupById(product.kmsCountedId);
    if (protocol === undefined && group !== undefined && clientProtocol(group) === undefined) {
      // Speaking 6.0 for a product whose clients speak a newer version would check something no client sends.
      throw new UsageProblem(
        `${inert(product.name)}: the catalogue says its clients speak KMS ${inert(group.protocol)}, which this client ` +
          `does not know (it speaks ${describeKnownProtocols()}); pass --protocol 4, 5 or 6 to send an older version`,
      );
    }
    const hostShown = v.host.includes(':') ? `[${v.host}]` : v.host;
    try {
      const replies = await activate({
        host: v.host,
        port,
        product,
        requests,
        ndr64,
        btfn,
        timeoutMs: timeout * 1000,
        ...(protocol ? { protocol: protocol as KmsVersion } : {}),
        ...(v.cmid ? { cmid: v.cmid.toLowerCase() } : {}),
        ...(v.workstation ? { workstation: v.workstation } : {}),
      });
      if (format === 'json') {
        // The same fields as CSV; warnings stay a list in JSON (CSV joins them with "; ").
        io.stdout.write(
          toJson(
            replies.map((r) => ({ ...Object.fromEntries(FIELDS.map((f) => [f.header, f.value(r)])), warnings: r.warnings })),
            2,
          ) + '\n',
        );
      } else if (format === 'csv') {
        io.stdout.write(formatCsv(replies, FIELDS));
      } else {
        io.stdout.write(
          `${inert(product.name)} → ${inert(hostShown)}:${port}, KMS v${protocol ?? product.protocol}, ` +
            `NDR64 ${ndr64 ? 'on' : 'off'}, BTFN ${btfn ? 'on' : 'off'}\n`,
        );
        for (const [i, r] of replies.entries()) {
          for (const w of r.warnings) io.stdout.write(`  warning: ${inert(w)}\n`);
          if (r.verified) {
            const b = r.verified.base;
            const missing = product.requiredClientCount - b.currentCount;
            const outcome = r.activated
              ? 'client activates'
              : `client stays unactivated (0xC004F038: ${missing} more machine${missing === 1 ? '' : 's'} needed)`;
            io.stdout.write(
              `#${i + 1} served (response verified): ePID ${inert(b.epid)}, ` +
                `count ${b.currentCount} of ${product.requiredClientCount} needed → ${outcome}` +
                `, activation interval ${b.activationInterval} min, renewal interval ${b.renewalInterval} min` +
                (r.verified.hwid ? `, HwId ${r.verified.hwid.toString('hex').toUpperCase()}` : '') +
                '\n',
            );
          } else {
            io.stdout.write(`#${i + 1} refused: ${formatHresult(r.hresult)} ${describeHresult(r.hresult) ?? ''}\n`);
          }
        }
      }
      return replies.every((r) => r.hresult === 0) ? EXIT.OK : EXIT.FAILURE;
    } catch (err) {
      if (!(err instanceof KmsError) || err.code === 'KMS_ERR_CLI_USAGE') throw err;
      const hr = err.spec.hresult;
      io.stderr.write(
        `kms-appliance activate: ${inert(err.message)}\n  ` +
          (hr !== undefined ? `a Windows client would show ${formatHresult(hr)} (${describeHresult(hr) ?? ''}); ` : '') +
          `${err.spec.explain} [${err.code}]\n`,
      );
      return EXIT.FAILURE;
    }
  },
});

function intOption(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

function onOff(text: string): boolean | undefined {
  return text === 'on' ? true : text === 'off' ? false : undefined;
}
