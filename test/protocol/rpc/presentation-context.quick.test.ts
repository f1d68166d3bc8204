// The presentation-context result table and bookkeeping of a Windows host (PROTOCOL.md §2.5;
// C3, C4, C7), row by row.
import t from 'tap';
import type { PresentationContextItem } from '../../../src/protocol/rpc/bind';
import { btfnSyntax, KMS_INTERFACE, NDR32_SYNTAX, NDR64_SYNTAX, type TransferSyntaxId } from '../../../src/protocol/rpc/constants';
import { ContextTable, judgePresentationContexts } from '../../../src/protocol/rpc/presentation-context';
import { FOREIGN_INTERFACE_UUID, NIL_GUID } from '../../ids';

const ON = { ndr64: true, btfn: true };
const FOREIGN = { uuid: FOREIGN_INTERFACE_UUID, major: 1, minor: 0 };

function item(contextId: number, syntaxes: TransferSyntaxId[], abstractSyntax = KMS_INTERFACE): PresentationContextItem {
  return { contextId, abstractSyntax, transferSyntaxes: syntaxes };
}

/** [result, reason, transfer syntax uuid, version] per item. */
function rows(items: PresentationContextItem[], policy = ON): [number, number, string, number][] {
  return judgePresentationContexts(items, policy).results.map((r) => [r.result, r.reason, r.transferSyntax.uuid, r.transferSyntax.version]);
}

const NDR32_ROW: [number, number, string, number] = [0, 0, '8a885d04-1ceb-11c9-9fe8-08002b104860', 2];
const NDR64_ROW: [number, number, string, number] = [0, 0, '71710533-beba-4937-8319-b5dbef9ccc36', 1];

t.test('C3: NDR32 + NDR64 + BTFN(03) → (2,2) (0,0 NDR64) (3,3); only ctx 1 is served', async (t) => {
  const items = [item(0, [NDR32_SYNTAX]), item(1, [NDR64_SYNTAX]), item(2, [btfnSyntax(3)])];
  t.same(rows(items), [[2, 2, NIL_GUID, 0], NDR64_ROW, [3, 3, NIL_GUID, 0]]);
  t.same(judgePresentationContexts(items, ON).accepted, [{ item: 1, contextId: 1, syntax: 'ndr64' }]);
});

t.test('C4: NDR32 alone, and NDR32 + BTFN, are accepted with NDR32 v2', async (t) => {
  t.same(rows([item(0, [NDR32_SYNTAX])]), [NDR32_ROW]);
  t.same(rows([item(0, [NDR32_SYNTAX]), item(1, [btfnSyntax(3)])]), [NDR32_ROW, [3, 3, NIL_GUID, 0]]);
  t.same(judgePresentationContexts([item(0, [NDR32_SYNTAX]), item(1, [btfnSyntax(3)])], ON).accepted, [
    { item: 0, contextId: 0, syntax: 'ndr32' },
  ]);
});

t.test('NDR64 disabled: NDR32 accepted, NDR64 rejected (2,2) — a pre-Windows-8 host', async (t) => {
  const items = [item(0, [NDR32_SYNTAX]), item(1, [NDR64_SYNTAX]), item(2, [btfnSyntax(3)])];
  t.same(rows(items, { ndr64: false, btfn: true }), [NDR32_ROW, [2, 2, NIL_GUID, 0], [3, 3, NIL_GUID, 0]]);
});

t.test('BTFN: acknowledged bits are the requested ones AND 0x0003; disabled → (2,2)', async (t) => {
  t.same(rows([item(0, [btfnSyntax(0x01)])]), [[3, 1, NIL_GUID, 0]]);
  t.same(rows([item(0, [btfnSyntax(0x07)])]), [[3, 3, NIL_GUID, 0]]);
  t.same(rows([item(0, [btfnSyntax(0x00)])]), [[3, 0, NIL_GUID, 0]]);
  t.same(rows([item(0, [btfnSyntax(0x03)], FOREIGN)]), [[3, 3, NIL_GUID, 0]], 'any abstract syntax');
  t.same(rows([item(0, [btfnSyntax(0x03)])], { ndr64: true, btfn: false }), [[2, 2, NIL_GUID, 0]]);
  t.same(rows([item(0, [btfnSyntax(0x03)], FOREIGN)], { ndr64: true, btfn: false }), [[2, 2, NIL_GUID, 0]]);
});

t.test('C7: a foreign interface gets (2,1) whatever its syntax; only KMS/NDR64 rejects KMS/NDR32', async (t) => {
  t.same(rows([item(0, [NDR32_SYNTAX], FOREIGN)]), [[2, 1, NIL_GUID, 0]]);
  t.same(rows([item(0, [NDR64_SYNTAX], FOREIGN)]), [[2, 1, NIL_GUID, 0]]);
  t.same(rows([item(0, [NDR64_SYNTAX], FOREIGN)], { ndr64: false, btfn: true }), [[2, 1, NIL_GUID, 0]], 'also with NDR64 off');
  const items = [item(0, [NDR32_SYNTAX]), item(1, [NDR64_SYNTAX], FOREIGN)];
  t.same(rows(items), [NDR32_ROW, [2, 1, NIL_GUID, 0]]);
  t.same(judgePresentationContexts(items, ON).accepted, [{ item: 0, contextId: 0, syntax: 'ndr32' }]);
  // A foreign NDR32 item after the KMS one does not disturb the KMS context.
  t.same(judgePresentationContexts([item(0, [NDR32_SYNTAX]), item(1, [NDR32_SYNTAX], FOREIGN)], ON).accepted, [
    { item: 0, contextId: 0, syntax: 'ndr32' },
  ]);
});

t.test('KMS interface version 2.0 (or 1.1) is another interface: (2,1) (U1)', async (t) => {
  t.same(rows([item(0, [NDR32_SYNTAX], { ...KMS_INTERFACE, major: 2 })]), [[2, 1, NIL_GUID, 0]]);
  t.same(rows([item(0, [NDR64_SYNTAX], { ...KMS_INTERFACE, minor: 1 })]), [[2, 1, NIL_GUID, 0]]);
});

t.test('KMS with another transfer syntax, or NDR with the wrong version, gets (2,2)', async (t) => {
  t.same(rows([item(0, [{ uuid: FOREIGN.uuid, version: 1 }])]), [[2, 2, NIL_GUID, 0]]);
  t.same(rows([item(0, [{ ...NDR32_SYNTAX, version: 1 }])]), [[2, 2, NIL_GUID, 0]]);
  t.same(rows([item(0, [])]), [[2, 2, NIL_GUID, 0]], 'no transfer syntax at all');
});

t.test('n_transfer_syn > 1: the first supported syntax in order wins (§2.4)', async (t) => {
  t.same(rows([item(0, [{ uuid: FOREIGN.uuid, version: 1 }, NDR32_SYNTAX])]), [NDR32_ROW]);
  t.same(rows([item(0, [NDR64_SYNTAX, NDR32_SYNTAX])]), [NDR64_ROW]);
  t.same(rows([item(0, [NDR64_SYNTAX, NDR32_SYNTAX])], { ndr64: false, btfn: true }), [NDR32_ROW]);
  // An accepted KMS/NDR64 elsewhere in the PDU moves [NDR32, NDR64] on to NDR64.
  t.same(rows([item(0, [NDR32_SYNTAX, NDR64_SYNTAX]), item(1, [NDR64_SYNTAX])]), [NDR64_ROW, NDR64_ROW]);
});

t.test('bookkeeping: alter_context adds contexts and never removes one (§2.5)', async (t) => {
  const table = new ContextTable(16);
  t.equal(table.add({ item: 0, contextId: 1, syntax: 'ndr64' }), 'added');
  t.equal(table.add({ item: 0, contextId: 0, syntax: 'ndr32' }), 'added');
  t.same([...table.entries()].sort(), [
    [0, 'ndr32'],
    [1, 'ndr64'],
  ]);
  t.equal(table.add({ item: 0, contextId: 0, syntax: 'ndr32' }), 'unchanged', 'a re-offer of the same context changes nothing');
  t.equal(table.add({ item: 0, contextId: 0, syntax: 'ndr64' }), 'changed', 'a re-offered id takes its new syntax');
  t.equal(table.get(0), 'ndr64');
  t.equal(table.get(7), undefined, 'never offered: unknown');
});

t.test('the table holds at most its limit of context ids; known ids can still be re-offered', async (t) => {
  const table = new ContextTable(3);
  for (let id = 0; id < 3; id++) t.equal(table.add({ item: id, contextId: id, syntax: 'ndr32' }), 'added');
  t.equal(table.add({ item: 0, contextId: 3, syntax: 'ndr32' }), 'full');
  t.equal(table.size, 3);
  t.equal(table.get(3), undefined, 'the id past the limit is not served');
  t.equal(table.add({ item: 0, contextId: 2, syntax: 'ndr64' }), 'changed');
  t.equal(table.size, 3);
});
