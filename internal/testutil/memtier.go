package testutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/alluvium/alluvium/internal/config"
)

// homeArg is the value of a --home flag in args ("" when there is none).
func homeArg(args []string) string {
	for i, a := range args {
		if a == "--home" && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--home="); ok {
			return v
		}
	}
	return ""
}

// RemoveMemTiers removes the default MEM tiers (config.DefaultTiers) of
// every worker dir under home. They live in /dev/shm, outside the test's
// temp dirs, so nothing else removes them: without this a suite run left
// its cached blocks in RAM until the machine rebooted (a benchmark that
// runs `alluvium local` itself calls it when it ends the process). A worker's dir is a
// few levels under its home; the walk stops at depth 4.
func RemoveMemTiers(home string) {
	if home == "" {
		return
	}
	root := filepath.Clean(home)
	depth := strings.Count(root, string(filepath.Separator))
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(p, string(filepath.Separator))-depth >= 4 {
			return filepath.SkipDir
		}
		dirs, _ := filepath.Glob(config.DefaultMemTierPrefix(p) + "*")
		for _, m := range dirs {
			_ = os.RemoveAll(m)
		}
		return nil
	})
}
