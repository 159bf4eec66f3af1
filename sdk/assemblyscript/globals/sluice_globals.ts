// Replacements for the functions AssemblyScript imports from "env" by
// default (abort, trace, seed), which sluice does not offer. asc uses them
// with --lib <this directory> --use abort=sluice_abort --use
// trace=sluice_trace --use seed=sluice_seed.

@external("sluice", "log") declare function sluice_host_log(level: i32, buf: usize, len: i32): i32;
@external("wasi_snapshot_preview1", "random_get") declare function sluice_random_get(buf: usize, len: usize): u16;

function sluice_log_line(level: i32, msg: string): void {
  const b = String.UTF8.encode(msg);
  sluice_host_log(level, changetype<usize>(b), b.byteLength);
}

/** abort logs the message and where, then traps: the invocation fails as a trap. */
export function sluice_abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "abort: " + (message !== null ? message : "(no message)");
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  sluice_log_line(3, text);
  unreachable();
}

/** trace logs a debug line with its numbers. */
export function sluice_trace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let text = "trace: " + message;
  const args: f64[] = [a0, a1, a2, a3, a4];
  for (let i = 0; i < n && i < 5; i++) text += " " + args[i].toString();
  sluice_log_line(0, text);
}

/** seed seeds Math.random from WASI random_get. */
export function sluice_seed(): f64 {
  const buf = memory.data(8);
  sluice_random_get(buf, 8);
  return <f64>load<u64>(buf);
}
