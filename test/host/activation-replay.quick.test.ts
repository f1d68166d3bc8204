// Every request captured between the reference implementations, replayed into our host with its
// clock set to the request's client time: the answer must verify for the client that sent it and
// carry the ePID of the right host-key group (PROTOCOL.md §7.4).
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseEpid } from '../../src/host/epid';
import { decodeKmsRequest, verifyKmsResponse } from '../../src/protocol/kms';
import type { SentKmsRequest } from '../../src/protocol/kms/types';
import { catalog, makeHost } from './host-harness';
import { ROOT } from '../paths';

interface CapturedCall {
  kms_request_hex: string;
  hresult: string;
  request: {
    fields: {
      version: string;
      kms_counted_id: string;
      application_id: string;
      cmid: string;
      n_policy: number;
      client_time_filetime: string;
      workstation: string;
    };
  };
  response?: { fields: { count: number } };
}
interface Capture {
  server: string;
  decoded: { calls: CapturedCall[] };
}

// The §7.4 choice for the products in the captures, written out by hand from the catalogue's lists.
const EXPECTED_HOST_KEY_GROUP: Record<string, string> = {
  'Windows 10/11 2015 (Volume)': 'Windows 10 2019',
  'Windows 7': 'Windows 10 2019',
  'Windows Vista': 'Windows 7',
  'Windows 8 (Volume)': 'Windows 8',
  'Windows 8.1 (Volume)': 'Windows 8.1',
  'Windows Server 2008 R2 A (Web and HPC)': 'Windows Server 2008 R2 A (Web & HPC)',
  'Windows Server 2008 R2 B (Standard and Enterprise)': 'Windows Server 2008 R2 B (Standard & Enterprise)',
  'Windows Server 2008 R2 C (Datacenter and Itanium)': 'Windows Server 2008 R2 C (Datacenter)',
  'Windows Server 2012 R2': 'Windows Server 2012 R2 With Win 10',
  'Windows Server 2019': 'Windows Server 2019',
  'Office 2010': 'Office 2010 VL',
  'Office 2013': 'Office 2013 VL',
  'Office 2016': 'Office 2016 VL',
  'Office 2019': 'Office 2019 VL',
};

const dir = join(ROOT, 'test', 'fixtures', 'exchanges');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();

t.test('the fixtures are there', async (t) => {
  t.ok(files.length >= 60, `${files.length} captures`);
});

let served = 0;
for (const file of files) {
  t.test(file, async (t) => {
    // FILETIMEs exceed 2^53: keep them as text so BigInt gets every digit.
    const text = readFileSync(join(dir, file), 'utf8').replace(/"client_time_filetime":\s*(\d+)/g, '"client_time_filetime": "$1"');
    const capture = JSON.parse(text) as Capture;
    // A fresh host per capture, like the fresh reference server of each capture.
    const first = capture.decoded.calls[0]!;
    const host = makeHost({ now: Number(BigInt(first.request.fields.client_time_filetime) / 10_000n - 11_644_473_600_000n) });
    // The C server counted honestly from an empty list, so its counts are ours too.
    const honestCounts = /C implementation/.test(capture.server);
    for (const call of capture.decoded.calls) {
      const f = call.request.fields;
      host.now = Number(BigInt(f.client_time_filetime) / 10_000n - 11_644_473_600_000n);
      const message = Buffer.from(call.kms_request_hex, 'hex');
      const result = host.send(message);
      t.equal(result.hresult, Number(call.hresult), `HRESULT ${call.hresult} as the reference host answered`);
      if (result.hresult !== 0) {
        t.equal(result.response, undefined);
        t.equal(result.outcome.result, 'refused');
        continue;
      }
      served++;
      // What the client kept of its request; the decoder's view is checked against the capture's own decode.
      const req = decodeKmsRequest(message, { verifyV4Mac: true });
      t.equal(`${req.version}.0`, f.version);
      t.equal(req.base.clientMachineId, f.cmid);
      t.equal(req.base.kmsCountedId, f.kms_counted_id);
      t.equal(req.base.requestTime, BigInt(f.client_time_filetime));
      const sent: SentKmsRequest = {
        version: req.version,
        base: req.base,
        message,
        ...(req.iv ? { iv: req.iv } : {}),
        ...(req.dreq ? { dreq: req.dreq } : {}),
      };
      const verified = verifyKmsResponse(result.response!, sent);
      t.equal(verified.base.clientMachineId, f.cmid);
      t.equal(verified.base.clientTime, BigInt(f.client_time_filetime));

      const groupName = catalog.kmsGroupById(f.kms_counted_id)!.name;
      const expected = catalog.findHostKeyGroup(EXPECTED_HOST_KEY_GROUP[groupName]!)!;
      t.ok(expected, `${groupName} has an expected host-key group`);
      t.equal(verified.base.epid, host.deps.identity.epidFor(expected.id), `${groupName} answered with the ePID of "${expected.name}"`);
      t.equal(parseEpid(verified.base.epid)?.groupId, expected.groupId);
      t.equal(result.outcome.productGroupName, groupName);
      if (honestCounts) t.equal(verified.base.currentCount, call.response!.fields.count, 'the same count as the honest reference');
      t.equal(result.outcome.workstationName, f.workstation);
    }
  });
}

t.test('every successful capture was replayed', async (t) => {
  t.ok(served >= 60, `${served} served calls`);
});
