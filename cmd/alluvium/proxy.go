package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/proxy"
)

func newProxyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "proxy",
		Short: "Run the proxy: an Alluxio-compatible REST API and an S3 gateway over the cluster",
		Long: `Run the proxy, a client of the cluster that serves two HTTP APIs:

REST (proxy.rest-port, 39999; P+6 under --port-base P), wire-compatible with
Alluxio 2.x's proxy, so existing Alluxio REST clients work unchanged:
  POST /api/v1/paths/{path}/{create-directory|create-file|delete|exists|free|
       get-status|list-status|mount?src=|open-file|rename?dst=|set-attribute|unmount}
  GET  /api/v1/paths/{path}/download-file
  POST /api/v1/streams/{id}/{read|write|close}
plus the job service with the JSON of 'job ... --output json':
  POST /api/v1/jobs {"plan": "load", "config": {"path": "/data"}}
  GET  /api/v1/jobs[?status=RUNNING]   GET /api/v1/jobs/{id}   POST /api/v1/jobs/{id}/cancel
When the cluster has a token, REST calls need "Authorization: Bearer <token>"
(unless proxy.rest-open).

S3 (proxy.s3-port, 39998; P+7), path-style, and under /api/v1/s3/ on the REST
port: a bucket is a top-level directory, a key the path below it. Requests are
signed with AWS Signature V4: the access key names a user of security.users
and the secret is that user's token (the cluster token signs as the gateway
itself, a superuser; proxy.s3.users adds keys that do too). The gateway keeps
nothing of its own: object metadata and multipart uploads live in the FS
master, so several proxies can serve the same buckets.

The FS master and job masters are found from --master/--job-master,
ALLUVIUM_MASTER/ALLUVIUM_JOB_MASTER, or the config file.`,
		Example: `  # beside a cluster on the default ports
  alluvium proxy --home /var/lib/alluvium-proxy

  # a cluster started with 'alluvium local --port-base 23000 --token s3cret'
  alluvium proxy --port-base 23000 --token s3cret --home /tmp/proxy
  curl -X POST -H 'Authorization: Bearer s3cret' http://127.0.0.1:23006/api/v1/paths///list-status
  AWS_ACCESS_KEY_ID=me AWS_SECRET_ACCESS_KEY=s3cret \
    aws --endpoint-url http://127.0.0.1:23007 s3 ls`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := serverAuth(cfg, false); err != nil {
				return err
			}
			log, err := serverProcess(cfg, "proxy")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p, err := proxy.New(cfg, log)
			if err != nil {
				return usageError{err}
			}
			if err := p.Start(ctx); err != nil {
				return err
			}
			fmt.Printf("proxy ready: REST http://%s, S3 http://%s, FS master %s, job master %s\n",
				p.RESTAddr(), p.S3Addr(), cfg.Client.Master, cfg.Client.JobMaster)
			<-ctx.Done()
			log.Info("stopping the proxy")
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return p.Stop(sctx)
		},
	}
}
