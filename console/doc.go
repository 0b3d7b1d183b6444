// Package console is the web console: the pages a person opens in a
// browser to watch and drive the cluster (overview, jobs with live progress,
// a job's tasks and failed paths, policies and pipelines, workers, the
// namespace with its blocks and a download).
//
// It is a client of the cluster, like proxy/: everything it shows or does
// goes through the sdk, acting for the logged-in user (sdk.AsUser), so the
// FS master's permissions and the job master's visibility rules apply as
// they do to the CLI. It serves no process of its own: Mount adds it under
// /ui/ to an http port that already exists (the FS master's, each job
// master's, `alluvium local`'s), with that port's authentication (a bearer
// token or client certificate, or a browser session made from a token at
// the login form; see internal/rpc's sessions).
//
// The pages are plain ES modules and CSS embedded with go:embed (web/); no
// build step and nothing fetched at run time. The one third-party library,
// uPlot (charts), is vendored in web/vendor with its version and licence;
// `make console-vendor` refreshes it from the npm registry.
package console
