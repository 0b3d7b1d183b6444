// Package client is Alluvium's one client layer: how every caller — the
// SDK (and through it the CLI and the proxy), the job workers, the job
// master's planners and forwarding, the FS master's persister, the block
// workers — reaches the cluster's servers.
//
// It owns what must exist once:
//   - connections: a Pool keeps one gRPC connection per address, dialled
//     with the caller's authentication (token, TLS, acting-for user);
//   - leader discovery: FSMaster and JobMaster take the addresses of a
//     group of masters, ask them (GetLeader) which one leads, and follow it
//     when it moves;
//   - retries: a call a master did not execute (Unavailable with the
//     api.LeaderTrailer, or no leader known yet) is sent again to the leader
//     whatever it was; a call lost to a connection failure is sent again
//     only when it is idempotent (a read, a call marked with Idempotent, or
//     any job-master call: each carries a request id or is a no-op twice),
//     after the leader is found again. Any other error — a wrong token, a
//     refused permission, a bad argument — is returned at once.
//
// FSMaster and JobMaster are grpc.ClientConnInterface values, so the
// generated api clients run over them unchanged. Nothing outside this
// package dials the api services (a test in internal/archtest checks it).
package client
