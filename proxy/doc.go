// Package proxy is `alluvium proxy`: a client of the cluster (it reaches
// the servers only through the public SDK) that serves
//
//   - on proxy.rest-port, a REST API wire-compatible with Alluxio 2.x's
//     proxy — POST /api/v1/paths/{path}/{action}, GET .../download-file,
//     POST /api/v1/streams/{id}/read|write|close — plus /api/v1/jobs to
//     drive the job service with the JSON of `--output json`, /healthz and
//     /metrics;
//   - on proxy.s3-port (and under /api/v1/s3/ on the REST port), an S3
//     gateway (package proxy/s3, with SigV4 in proxy/sigv4).
//
// Routing works on the raw request path: Alluxio clients send
// /api/v1/paths//dir/file/exists and /api/v1/paths///list-status (the
// root), which path cleaning would break. Streams (create-file/open-file
// ids) live in the proxy; one left idle for proxy.stream-timeout is closed
// and, if it was a writer, its file discarded.
package proxy
