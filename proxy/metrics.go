package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the proxy's Prometheus figures, served on the REST port's
// /metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // api (rest, s3), op, code
	latency  *prometheus.HistogramVec // api, op
	bytesIn  *prometheus.CounterVec   // api
	bytesOut *prometheus.CounterVec   // api
	streams  prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alluvium_proxy_requests_total", Help: "Requests served, by API (rest, s3), operation and status code.",
		}, []string{"api", "op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "alluvium_proxy_request_seconds", Help: "Time to serve a request, by API and operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"api", "op"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alluvium_proxy_bytes_received_total", Help: "File bytes received from clients.",
		}, []string{"api"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alluvium_proxy_bytes_sent_total", Help: "File bytes sent to clients.",
		}, []string{"api"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alluvium_proxy_open_streams", Help: "REST streams (create-file/open-file ids) open.",
		}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.bytesIn, m.bytesOut, m.streams)
	return m
}
