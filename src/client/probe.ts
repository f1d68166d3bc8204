// One real activation call against a KMS host, reduced to what `dns check` reports. The probe is a
// genuine request from the machine running the check: it uses one fixed machine id and the
// workstation name "kms-appliance-dns-check", so however often it runs it counts as one machine
// (visible in `kms-appliance clients`, gone after 30 days of silence).
import { KmsError, describeHresult, formatHresult } from '../errors';
import { loadCatalog } from '../catalog/load';
import { activate } from './kms-client';
import { chooseProduct, type ChosenProduct } from './product-choice';

const PROBE_CMID = '6b6d7361-7070-4c69-8e63-65636865636b';
const PROBE_WORKSTATION = 'kms-appliance-dns-check';
/** A product every KMS host serves (Windows 10/11 Enterprise, protocol v6). */
const PROBE_PRODUCT = 'Windows 10/11 Enterprise';

export type ProbeResult =
  | { readonly ok: true; readonly epid: string; readonly count: number; readonly hresult: 0 }
  | { readonly ok: false; readonly code: string; readonly hresult: number | undefined; readonly message: string };

/** Chosen once: `dns check` probes every host of every record, the catalogue need not be read each time. */
let probeProduct: ChosenProduct | undefined;

export async function probeKmsHost(host: string, port: number, timeoutMs = 5000): Promise<ProbeResult> {
  try {
    probeProduct ??= chooseProduct(loadCatalog(), PROBE_PRODUCT);
    const product = probeProduct;
    const [reply] = await activate({ host, port, product, cmid: PROBE_CMID, workstation: PROBE_WORKSTATION, timeoutMs });
    if (!reply) throw new KmsError('KMS_ERR_CLIENT_PROTOCOL', 'no reply');
    if (reply.hresult !== 0 || !reply.verified) {
      return {
        ok: false,
        code: 'KMS_ERR_CLIENT_REFUSED',
        hresult: reply.hresult,
        message:
          `the host refused the activation with ${formatHresult(reply.hresult)} ` + `(${describeHresult(reply.hresult) ?? 'unknown code'})`,
      };
    }
    return { ok: true, epid: reply.verified.base.epid, count: reply.verified.base.currentCount, hresult: 0 };
  } catch (err) {
    if (err instanceof KmsError) return { ok: false, code: err.code, hresult: err.spec.hresult, message: err.message };
    return { ok: false, code: 'KMS_ERR_CLIENT_PROTOCOL', hresult: undefined, message: (err as Error).message };
  }
}
