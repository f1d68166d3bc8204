// RFC 2136 UPDATE messages that publish or withdraw this appliance's `_vlmcs._tcp` SRV record
// and its target's A/AAAA in a site DNS zone, the way a Windows KMS host registers itself
// (PROTOCOL.md §8.1). Pure: the registrar signs and sends them.
import { isIpv6 } from '../protocol/dns/addresses';
import { EMPTY_HEADER, OPCODE, RR_CLASS, RR_TYPE, type DnsMessage, type DnsRecord, type RData } from '../protocol/dns/message';
import { isInZone, sameName } from '../protocol/dns/names';

export interface SrvPublication {
  /** The zone the update goes to (the client DNS domain). */
  readonly zone: string;
  /** `_vlmcs._tcp.<zone>` */
  readonly srvName: string;
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
  readonly ttl: number;
  readonly addresses: readonly string[];
}

export type SrvData = Extract<RData, { kind: 'srv' }>;

const NO_RDATA: RData = { kind: 'raw', bytes: Buffer.alloc(0) };

function srvDataOf(p: SrvPublication): SrvData {
  return { kind: 'srv', priority: p.priority, weight: p.weight, port: p.port, target: p.target };
}

function sameSrv(a: SrvData, b: SrvData): boolean {
  return a.priority === b.priority && a.weight === b.weight && a.port === b.port && sameName(a.target, b.target);
}

/** RFC 2136 §2.5.4: class NONE, TTL 0 deletes exactly this RR and leaves other hosts' SRVs alone. */
function deleteRr(name: string, type: number, data: RData): DnsRecord {
  return { name, type, class: RR_CLASS.NONE, ttl: 0, data };
}

/** RFC 2136 §2.5.2: class ANY, TTL 0, no RDATA deletes the whole RRset. */
function deleteRrset(name: string, type: number): DnsRecord {
  return { name, type, class: RR_CLASS.ANY, ttl: 0, data: NO_RDATA };
}

function addressRecords(p: SrvPublication): DnsRecord[] {
  return p.addresses.map((a) =>
    isIpv6(a)
      ? { name: p.target, type: RR_TYPE.AAAA, class: RR_CLASS.IN, ttl: p.ttl, data: { kind: 'aaaa', address: a } }
      : { name: p.target, type: RR_TYPE.A, class: RR_CLASS.IN, ttl: p.ttl, data: { kind: 'a', address: a } },
  );
}

function updateMessage(id: number, zone: string, updates: DnsRecord[]): DnsMessage {
  return {
    header: { ...EMPTY_HEADER, id, opcode: OPCODE.UPDATE },
    questions: [{ name: zone, type: RR_TYPE.SOA, class: RR_CLASS.IN }], // the zone section
    answers: [], // no prerequisites: the update is idempotent
    authorities: updates, // the update section
    additionals: [],
  };
}

/** True when the target's address records live in the zone, so this update may touch them. */
function ownsTargetAddresses(p: SrvPublication): boolean {
  return isInZone(p.target, p.zone) && !sameName(p.target, p.zone);
}

/**
 * Delete-then-add: SRV records of the zone that name our target but differ from what we
 * publish now (`existing`, from a query; a changed port or priority) go, our SRV is replaced,
 * and the target's A/AAAA RRsets are replaced by the current addresses.
 */
export function buildRegisterUpdate(p: SrvPublication, id: number, existing: readonly SrvData[] = []): DnsMessage {
  const mine = srvDataOf(p);
  const updates: DnsRecord[] = [];
  for (const old of existing) {
    if (sameName(old.target, p.target) && !sameSrv(old, mine)) updates.push(deleteRr(p.srvName, RR_TYPE.SRV, old));
  }
  updates.push(deleteRr(p.srvName, RR_TYPE.SRV, mine));
  updates.push({ name: p.srvName, type: RR_TYPE.SRV, class: RR_CLASS.IN, ttl: p.ttl, data: mine });
  if (ownsTargetAddresses(p) && p.addresses.length > 0) {
    updates.push(deleteRrset(p.target, RR_TYPE.A), deleteRrset(p.target, RR_TYPE.AAAA));
    updates.push(...addressRecords(p));
  }
  return updateMessage(id, p.zone, updates);
}

/** Withdraws what buildRegisterUpdate published (every SRV naming our target). */
export function buildRemoveUpdate(p: SrvPublication, id: number, existing: readonly SrvData[] = []): DnsMessage {
  const mine = srvDataOf(p);
  const updates: DnsRecord[] = [deleteRr(p.srvName, RR_TYPE.SRV, mine)];
  for (const old of existing) {
    if (sameName(old.target, p.target) && !sameSrv(old, mine)) updates.push(deleteRr(p.srvName, RR_TYPE.SRV, old));
  }
  if (ownsTargetAddresses(p) && p.addresses.length > 0) updates.push(deleteRrset(p.target, RR_TYPE.A), deleteRrset(p.target, RR_TYPE.AAAA));
  return updateMessage(id, p.zone, updates);
}
