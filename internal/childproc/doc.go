// Package childproc owns what the servers set on the processes they start
// (plan plugins, exec plans' commands) so that none outlives its parent: a
// worker killed with SIGKILL runs no cleanup, and without this its
// children would keep running, holding files and ports, until someone
// found them.
package childproc
