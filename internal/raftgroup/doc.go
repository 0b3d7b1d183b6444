// Package raftgroup is the raft plumbing the job masters and the FS masters
// share: the peer list syntax (id=host:raftport|host:rpcport), the bbolt
// log and stable store with file snapshots, the authenticated TCP transport,
// hashicorp/raft's configuration from our keys, raft's log routed into zap,
// and run-time membership changes (a new member joins as a non-voter and is
// promoted once it holds the state, as Consul's autopilot does).
//
// What a group replicates — its FSM, its commands, its leader loops — stays
// with the role that owns it.
package raftgroup
