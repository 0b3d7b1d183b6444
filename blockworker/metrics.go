package blockworker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus series on its http port.
type metrics struct {
	bytesReadCache  prometheus.Counter
	bytesReadUFS    prometheus.Counter
	bytesReadShort  prometheus.Counter
	bytesWritten    prometheus.Counter
	bytesCached     prometheus.Counter
	blocksCached    prometheus.Counter
	bytesUFSWritten prometheus.Counter
	bytesThrottled  prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, store *Store, fills func() int) *metrics {
	read := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alluvium_worker_bytes_read_total",
		Help: "Bytes served to clients, by source: cache (stream from a tier), ufs (read through on a miss), shortcircuit (leased to a local client).",
	}, []string{"source"})
	m := &metrics{
		bytesReadCache: read.WithLabelValues("cache"),
		bytesReadUFS:   read.WithLabelValues("ufs"),
		bytesReadShort: read.WithLabelValues("shortcircuit"),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_worker_bytes_written_total", Help: "Bytes of blocks written by clients (WriteBlock).",
		}),
		bytesCached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_worker_bytes_cached_total", Help: "Bytes of blocks cached from the UFS.",
		}),
		blocksCached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_worker_blocks_cached_total", Help: "Blocks cached from the UFS (fills committed); a block filled twice counts twice.",
		}),
		bytesUFSWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_worker_ufs_bytes_written_total", Help: "Bytes written to the UFS for clients (WriteUfsFile).",
		}),
		bytesThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alluvium_worker_throttled_bytes_total", Help: "Bytes moved for jobs with a bandwidth limit (fills, copies, UFS writes), counted as they pass the job's budget.",
		}),
	}
	reg.MustRegister(read, m.bytesWritten, m.bytesCached, m.blocksCached, m.bytesUFSWritten, m.bytesThrottled,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alluvium_worker_evictions_total", Help: "Blocks evicted to make room.",
		}, func() float64 { return float64(store.Evictions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_worker_blocks", Help: "Blocks cached.",
		}, func() float64 { return float64(store.Count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_worker_fills_running", Help: "Blocks being cached from the UFS now.",
		}, func() float64 { return float64(fills()) }),
		tierCollector{store},
	)
	return m
}

var (
	tierCapDesc  = prometheus.NewDesc("alluvium_worker_tier_capacity_bytes", "Quota of a tier.", []string{"tier"}, nil)
	tierUsedDesc = prometheus.NewDesc("alluvium_worker_tier_used_bytes", "Bytes used in a tier (blocks and reservations).", []string{"tier"}, nil)
)

// tierCollector reports tier usage at scrape time.
type tierCollector struct{ s *Store }

func (c tierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tierCapDesc
	ch <- tierUsedDesc
}

func (c tierCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.Usage() {
		ch <- prometheus.MustNewConstMetric(tierCapDesc, prometheus.GaugeValue, float64(t.Capacity), t.Alias)
		ch <- prometheus.MustNewConstMetric(tierUsedDesc, prometheus.GaugeValue, float64(t.Used), t.Alias)
	}
}
