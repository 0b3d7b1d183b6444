package proxy

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/internal/paths"
)

type routeKind int

const (
	routePaths routeKind = iota + 1
	routeStreams
	routeJobs
	routeS3
)

// route is a parsed /api/v1 URL.
type route struct {
	kind   routeKind
	path   string // paths: the clean Alluvium path
	action string // paths, streams: the last segment; jobs: "" or "cancel"
	id     int64  // streams; jobs when hasID
	hasID  bool
}

const apiPrefix = "/api/v1/"

// pathActions are the actions of /api/v1/paths/{path}/{action}.
var pathActions = map[string]bool{
	"create-directory": true, "create-file": true, "delete": true, "download-file": true,
	"exists": true, "free": true, "get-status": true, "list-status": true, "mount": true,
	"open-file": true, "rename": true, "set-attribute": true, "unmount": true,
}

var streamActions = map[string]bool{"read": true, "write": true, "close": true}

// PathActions lists the actions of /api/v1/paths/{path}/{action}, sorted:
// the two-user attacker test (tests/auth) checks it attacks every one, so
// an action added here cannot skip being checked for the caller's identity.
func PathActions() []string { return slices.Sorted(maps.Keys(pathActions)) }

// StreamActions lists the actions of /api/v1/streams/{id}/{action}.
func StreamActions() []string { return slices.Sorted(maps.Keys(streamActions)) }

// parseRoute parses the escaped (raw) path of a request. It must see the
// path as sent: clients build /api/v1/paths//foo/exists (a "/" between
// "paths" and an absolute path) and /api/v1/paths///list-status for the
// root, which any cleaning would change or lose.
func parseRoute(escaped string) (route, *restError) {
	rest, ok := strings.CutPrefix(escaped, apiPrefix)
	if !ok {
		return route{}, notFound("no endpoint %s (the REST API is under %s)", escaped, apiPrefix)
	}
	switch {
	case strings.HasPrefix(rest, "paths/"):
		return parsePathsRoute(rest[len("paths/"):])
	case strings.HasPrefix(rest, "streams/"):
		return parseStreamsRoute(rest[len("streams/"):])
	case rest == "jobs" || strings.HasPrefix(rest, "jobs/"):
		return parseJobsRoute(strings.TrimPrefix(rest, "jobs"))
	case rest == "s3" || strings.HasPrefix(rest, "s3/"):
		return route{kind: routeS3}, nil
	}
	return route{}, notFound("no endpoint %s: want %spaths/{path}/{action}, %sstreams/{id}/{action} or %sjobs", escaped, apiPrefix, apiPrefix, apiPrefix)
}

// parsePathsRoute parses "{path}/{action}" where {path} may be empty (the
// root), absolute ("/foo", sent as paths//foo/...) or relative ("foo").
func parsePathsRoute(rest string) (route, *restError) {
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return route{}, notFound("no path in /api/v1/paths/%s: want /api/v1/paths/{path}/{action}", rest)
	}
	mid, action := rest[:i], rest[i+1:]
	if !pathActions[action] {
		return route{}, notFound("unknown action %q: want one of create-directory, create-file, delete, download-file, exists, free, get-status, list-status, mount, open-file, rename, set-attribute, unmount", action)
	}
	p, err := url.PathUnescape(mid)
	if err != nil {
		return route{}, restErrorf(codes.InvalidArgument, "path %q: %v", mid, err)
	}
	clean, rerr := cleanPath(p)
	if rerr != nil {
		return route{}, rerr
	}
	return route{kind: routePaths, path: clean, action: action}, nil
}

// cleanPath makes an API path absolute and clean: "" is the root, an
// alluxio:// or alluvium:// URI names its path.
func cleanPath(p string) (string, *restError) {
	for _, scheme := range []string{"alluxio://", "alluvium://"} {
		if rest, ok := strings.CutPrefix(p, scheme); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				p = rest[i:]
			} else {
				p = "/"
			}
		}
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	clean, err := paths.Clean(p)
	if err != nil {
		return "", restErrorf(codes.InvalidArgument, "%v", err)
	}
	return clean, nil
}

func parseStreamsRoute(rest string) (route, *restError) {
	idStr, action, ok := strings.Cut(rest, "/")
	if !ok || !streamActions[action] {
		return route{}, notFound("no endpoint streams/%s: want /api/v1/streams/{id}/read|write|close", rest)
	}
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return route{}, restErrorf(codes.InvalidArgument, "stream id %q is not a number", idStr)
	}
	return route{kind: routeStreams, id: id, action: action, hasID: true}, nil
}

// parseJobsRoute parses what follows "jobs": "", "/", "/{id}", "/{id}/cancel".
func parseJobsRoute(rest string) (route, *restError) {
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		return route{kind: routeJobs}, nil
	}
	idStr, action, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return route{}, restErrorf(codes.InvalidArgument, "job id %q is not a number", idStr)
	}
	if action != "" && action != "cancel" {
		return route{}, notFound("no endpoint jobs/%s: want /api/v1/jobs/{id} or /api/v1/jobs/{id}/cancel", rest)
	}
	return route{kind: routeJobs, id: id, hasID: true, action: action}, nil
}
