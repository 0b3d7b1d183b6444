// Package arch holds tests of the house's walls: which package may dial the
// cluster, which CLI files may import a role, what the scheduler may know of
// plans. They read the source with go/parser, so a change that breaks a rule
// fails `make test` with the file and line that broke it.
package arch
