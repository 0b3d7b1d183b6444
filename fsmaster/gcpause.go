package fsmaster

import (
	"runtime/debug"
	"sync"
)

// loadGC pauses the garbage collector while checkpoints load. A load makes
// almost no garbage — every inode it allocates stays — so each collection
// during it would mark a growing, entirely live heap for nothing (a third
// of a million-inode load's time). The heap grows by what it loads either
// way. Loads may overlap (the standbys of an in-process test group): the
// collector comes back when the last one ends.
var loadGC struct {
	sync.Mutex
	loads   int
	percent int
}

// pauseGC stops the collector until the returned func is called.
func pauseGC() (resume func()) {
	loadGC.Lock()
	if loadGC.loads == 0 {
		loadGC.percent = debug.SetGCPercent(-1)
	}
	loadGC.loads++
	loadGC.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			loadGC.Lock()
			defer loadGC.Unlock()
			if loadGC.loads--; loadGC.loads == 0 {
				debug.SetGCPercent(loadGC.percent)
			}
		})
	}
}
