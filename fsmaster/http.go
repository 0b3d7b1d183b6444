package fsmaster

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/fileview"
	"github.com/alluvium/alluvium/internal/rpc"
)

// registerHTTP adds the master's metrics and JSON API to its http port.
func (m *Master) registerHTTP() {
	reg := m.http.Registry
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alluvium_fsmaster_operations_total", Help: "FS master operations by type.",
	}, []string{"op"})
	reg.MustRegister(ops, m.hbTimer.Collector())
	// One counter per operation, looked up once: WithLabelValues hashes
	// the label on every call, and every call counts.
	var byOp sync.Map // op → prometheus.Counter
	m.ns.onOp = func(op string) {
		c, ok := byOp.Load(op)
		if !ok {
			c, _ = byOp.LoadOrStore(op, ops.WithLabelValues(op))
		}
		c.(prometheus.Counter).Inc()
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alluvium_fsmaster_journal_entries_total", Help: "Journal entries made durable since start.",
		}, func() float64 { return float64(m.JournalStats().Entries) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alluvium_fsmaster_journal_fsyncs_total", Help: "Journal group commits (one fsync each) since start.",
		}, func() float64 { return float64(m.JournalStats().Batches) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_journal_sequence", Help: "Last durable journal sequence.",
		}, func() float64 { return float64(m.JournalStats().LastSequence) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_journal_checkpoint_sequence", Help: "Sequence of the newest checkpoint.",
		}, func() float64 { return float64(m.lastCkptSeq.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_leader", Help: "1 while this FS master leads (takes writes), 0 while a standby of an embedded journal.",
		}, func() float64 {
			if m.emb != nil && !m.emb.isLeader() {
				return 0
			}
			return 1
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alluvium_fsmaster_state_rebuilds_total", Help: "Times this FS master rebuilt its state from raft after leading with changes the group did not commit (embedded journal).",
		}, func() float64 {
			if m.emb == nil {
				return 0
			}
			return float64(m.emb.fsm.rebuilds.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_inodes", Help: "Inodes in the namespace.",
		}, func() float64 {
			m.ns.mu.RLock()
			defer m.ns.mu.RUnlock()
			return float64(m.ns.st.InodeCount())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_cached_blocks", Help: "Blocks with at least one cached copy.",
		}, func() float64 { return float64(m.ns.blocks.blockCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_workers_live", Help: "Block workers that are LIVE.",
		}, func() float64 { live, _, _ := m.ns.blocks.summary(); return float64(live) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alluvium_fsmaster_workers_lost", Help: "Block workers that are LOST.",
		}, func() float64 { _, lost, _ := m.ns.blocks.summary(); return float64(lost) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alluvium_fsmaster_workers_lost_total", Help: "Block workers declared LOST since start (silent past their TTL, or at the job master's word).",
		}, func() float64 { return float64(m.ns.blocks.lostTotal.Load()) }),
	)
	m.http.Mux.HandleFunc("/api/v1/files", m.handleFiles)
	m.http.Mux.HandleFunc("/api/v1/master", func(w http.ResponseWriter, r *http.Request) {
		rpc.WriteJSON(w, http.StatusOK, m.Info())
	})
}

// handleFiles serves GET /api/v1/files?path=P: the status of P, and for a
// directory one page of its children (&limit=N, &pageToken=T).
func (m *Master) handleFiles(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		rpc.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "GET only"})
		return
	}
	q := r.URL.Query()
	p := q.Get("path")
	if p == "" {
		p = "/"
	}
	info, err := m.ns.GetStatus(r.Context(), &api.GetStatusRequest{Path: p})
	if err != nil {
		rpc.WriteError(w, err)
		return
	}
	out := struct {
		fileview.File
		Children      []fileview.File `json:"children,omitempty"`
		NextPageToken string          `json:"nextPageToken,omitempty"`
	}{File: fileview.FromInfo(info)}
	if info.GetFolder() {
		limit, _ := strconv.Atoi(q.Get("limit"))
		resp, err := m.ns.ListStatus(r.Context(), &api.ListStatusRequest{Path: p, PageSize: int32(limit), PageToken: q.Get("pageToken")})
		if err != nil {
			rpc.WriteError(w, err)
			return
		}
		out.Children = make([]fileview.File, 0, len(resp.GetInfos()))
		for _, c := range resp.GetInfos() {
			out.Children = append(out.Children, fileview.FromInfo(c))
		}
		out.NextPageToken = resp.GetNextPageToken()
	}
	rpc.WriteJSON(w, http.StatusOK, out)
}
