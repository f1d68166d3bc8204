// V8 heap settings for the long-running server process. A smaller young generation and an
// old-space ceiling make V8 collect early instead of letting the heap balloon under load, keeping
// the box's memory flat (about half the peak RSS) with no measurable cost in throughput; the
// ceiling leaves several times the live heap a busy host needs. `npm start`, the installed
// wrapper (scripts/install.sh) and the benchmark start `node` with exactly these.
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-old-space-size=96'];
