#!/usr/bin/env node
// After `npm test`: the coverage of src/ must not fall below the floor in coverage-floor.json.
// The floor only rises: when the suite covers two points more than the floor, this says to raise
// it. The floor stays a point below what a run measures, because timing-dependent paths (the
// seeded fuzz runs, eviction under load) make coverage vary a little from run to run.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const floorFile = path.join(root, 'coverage-floor.json');
const summaryFile = path.join(root, '.tap', 'report', 'coverage-summary.json');

if (!fs.existsSync(summaryFile)) {
  console.error(`coverage-floor: no ${path.relative(root, summaryFile)}; run the whole suite with npm test first`);
  process.exit(1);
}
const floor = JSON.parse(fs.readFileSync(floorFile, 'utf8'));
const total = JSON.parse(fs.readFileSync(summaryFile, 'utf8')).total;
let failed = false;
for (const [metric, min] of Object.entries(floor)) {
  const pct = total[metric]?.pct;
  if (typeof pct !== 'number') {
    console.error(`coverage-floor: the summary has no ${metric}`);
    failed = true;
  } else if (pct < min) {
    console.error(`coverage-floor: ${metric} ${pct}% is below the floor of ${min}% (coverage-floor.json)`);
    failed = true;
  } else if (pct >= min + 2) {
    console.log(`coverage-floor: ${metric} ${pct}% (floor ${min}%): raise the floor in coverage-floor.json to ${Math.floor(pct) - 1}`);
  } else {
    console.log(`coverage-floor: ${metric} ${pct}% (floor ${min}%)`);
  }
}
process.exit(failed ? 1 : 0);
