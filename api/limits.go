package api

import (
	"net"
	"strconv"
	"strings"
)

// WorkerNamed reports whether name (an id, a host or host:port, as the
// load plan's --workers takes them) names the block worker id at addr
// (host:port).
func WorkerNamed(name string, id int64, addr string) bool {
	name = strings.TrimSpace(name)
	host, _, err := net.SplitHostPort(addr)
	if err != nil { // an IPv6 host printed without brackets
		host = addr
		if i := strings.LastIndexByte(addr, ':'); i >= 0 {
			host = addr[:i]
		}
	}
	return name == addr || name == host || name == strconv.FormatInt(id, 10)
}

// AllowsWorker reports whether a job with these limits may use the block
// worker id at addr (host:port): one its workers name when it names any,
// and none its exclude_workers name. Nil limits allow every worker.
func (l *JobLimits) AllowsWorker(id int64, addr string) bool {
	ok := len(l.GetWorkers()) == 0
	for _, n := range l.GetWorkers() {
		ok = ok || WorkerNamed(n, id, addr)
	}
	for _, n := range l.GetExcludeWorkers() {
		if WorkerNamed(n, id, addr) {
			return false
		}
	}
	return ok
}
