package plans

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/internal/paths"
)

// Event policies (policy add --on-create PATH PLAN ...): each run is for a
// batch of files completed under PATH, and its job is the policy's job
// narrowed to them here, where plan configs are known:
//
//   - persist names the batch's files (config files: path and inode id), so
//     each landed file is persisted by exactly one run, and one deleted or
//     replaced before its run is skipped quietly;
//   - load, replicate and exec run on the batch's common path (EventPath:
//     the file itself for a batch of one, else the deepest directory
//     holding them all);
//   - copy, move, sync and plugins have no single path to narrow: a policy
//     of theirs fires a pipeline instead (--pipeline, {{.paths}}/{{.path}}).

// EventFile is one file of an event policy's run.
type EventFile struct {
	Path string
	ID   int64
}

// eventPathPlans are the plans whose config path is narrowed to the
// batch's common path.
var eventPathPlans = map[string]bool{"load": true, "replicate": true, "exec": true}

// CheckEventPlan refuses a plan an event policy cannot narrow to its files.
func CheckEventPlan(plan string) error {
	if plan == "persist" || eventPathPlans[plan] {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "plan %s cannot run on the files of an event: --on-create fires persist, load, replicate or exec on them; for %s use --pipeline FILE with {{.paths}} or {{.path}} in its steps", plan, plan)
}

// EventPath is the common path of a batch: the file itself when every
// event is of one path, else the deepest directory holding them all.
func EventPath(files []string) string {
	if len(files) == 0 {
		return "/"
	}
	one := true
	for _, f := range files[1:] {
		one = one && f == files[0]
	}
	if one {
		return files[0]
	}
	common, _ := paths.Split(files[0])
	for _, f := range files[1:] {
		for common != "/" && !paths.IsAncestor(common, f) {
			common, _ = paths.Split(common)
		}
	}
	return common
}

// EventConfig returns the config of plan's job for a batch of files: the
// policy's config narrowed to them (see above), checked as a submit would
// check it without the cluster.
func EventConfig(plan string, config []byte, files []EventFile) ([]byte, error) {
	if err := CheckEventPlan(plan); err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s: an event run with no files", plan)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(config, &m); err != nil || m == nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: the policy's config is not a JSON object", plan)
	}
	if plan == "persist" {
		type file struct {
			Path string `json:"path"`
			ID   int64  `json:"id"`
		}
		fs := make([]file, len(files))
		for i, f := range files {
			fs[i] = file{Path: f.Path, ID: f.ID}
		}
		b, err := json.Marshal(fs)
		if err != nil {
			return nil, err
		}
		delete(m, "path")
		m["files"] = b
	} else {
		ps := make([]string, len(files))
		for i, f := range files {
			ps[i] = f.Path
		}
		b, err := json.Marshal(EventPath(ps))
		if err != nil {
			return nil, err
		}
		m["path"] = b
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := CheckConfig(plan, out); err != nil {
		return nil, fmt.Errorf("%s on %d files (%s...): %w", plan, len(files), strings.TrimSpace(files[0].Path), err)
	}
	return out, nil
}
