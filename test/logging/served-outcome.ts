// A served request's outcome as the host reports it, for the log-line tests and the log line's
// benchmark (bench/outcome-cost.ts): one Windows 10/11 Enterprise machine activated at count 26.
import type { ActivationOutcome } from '../../src/host/outcome';
import { NIL_GUID, WIN10_ENTERPRISE_SKU, WIN10_VOLUME_GROUP, WINDOWS_APP } from '../ids';

export const SERVED_OUTCOME: ActivationOutcome = Object.freeze({
  result: 'activated',
  hresult: 0,
  clientAddress: '192.0.2.17',
  protocolVersion: 6,
  clientMachineId: 'a4b1a2b3-0c0d-4e5f-8a9b-0c1d2e3f4a5b',
  previousClientMachineId: NIL_GUID,
  workstationName: 'ws01.branch.example.org',
  applicationId: WINDOWS_APP,
  applicationName: 'Windows',
  kmsCountedId: WIN10_VOLUME_GROUP,
  productGroupName: 'Windows 10/11 2015 (Volume)',
  activationId: WIN10_ENTERPRISE_SKU,
  skuName: 'Windows 10/11 Enterprise',
  requiredClientCount: 25,
  requestTimeMs: Date.parse('2026-12-01T10:00:00.000Z'),
  vm: true,
  licenseStatus: 2,
  licenseStatusName: 'initial grace (OOB)',
  bindingExpirationMinutes: 43200,
  currentCount: 26,
  epid: '03612-00206-556-123727-03-1033-20348.0000-2972021',
});
