// Children a test starts as tools (a shell script, the benchmark, an installed copy of the program)
// rather than as the code under coverage. tap puts its process recorder (@tapjs/processinfo:
// process tracking and coverage) into the NODE_OPTIONS of every child, whatever env the test
// passes, and every node process below pays ~0.3 s of CPU for it. `env -u NODE_OPTIONS` drops it
// at the last step. A child whose coverage of src/ counts (this checkout's serve process, its CLI)
// is started normally.
export function withoutTapRecorder(command: string, args: readonly string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', command, ...args]];
}
