// One surface of the appliance that the loopback fuzzer attacks (KMS over TCP, DNS over UDP and
// TCP, the admin HTTP listener). The runner starts one appliance with every surface enabled, then
// alternates rounds between targets and, after each round, asks every target whether a
// well-behaved client is still served.

export interface FuzzTarget {
  readonly name: string;
  /** Sends one round of hostile input; resolves with how many inputs (messages, PDUs, requests) it sent. */
  round(rnd: () => number): Promise<number>;
  /** Whether a well-behaved client of this surface is still served correctly right now. */
  healthy(): Promise<boolean>;
}
