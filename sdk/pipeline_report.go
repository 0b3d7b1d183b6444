package sdk

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/alluvium/alluvium/internal/humanize"
)

// Report is what a pipeline run did: one StepResult per step, in the order
// the steps were added. Print it (String, WriteTo) for a summary table.
type Report struct {
	Pipeline string       `json:"pipeline"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Steps    []StepResult `json:"steps"`
	canceled error        // the context's cause when Run was cancelled
}

// StepResult is how one step went.
type StepResult struct {
	Name   string     `json:"name"`
	Kind   string     `json:"kind"`           // "func", or "job " and the plan
	Plan   string     `json:"plan,omitempty"` // job steps
	Status StepStatus `json:"status"`
	// Attempts counts the tries made (0: never started).
	Attempts int `json:"attempts"`
	// JobIDs lists every job the step submitted, one per attempt that got
	// that far; Job is the last one's last state seen.
	JobIDs   []int64       `json:"jobIds,omitempty"`
	Job      *JobInfo      `json:"-"`
	Started  time.Time     `json:"started,omitzero"`
	Finished time.Time     `json:"finished,omitzero"`
	Duration time.Duration `json:"durationNs"`
	// Err is the last attempt's error (FAILED, CANCELED).
	Err error `json:"-"`
	// Reason says why a SKIPPED or CANCELED step did not start.
	Reason string `json:"reason,omitempty"`
}

// MarshalJSON adds the error's text and the last job in its CLI JSON form.
func (s StepResult) MarshalJSON() ([]byte, error) {
	type plain StepResult
	out := struct {
		plain
		Error string   `json:"error,omitempty"`
		Job   *JobJSON `json:"job,omitempty"`
	}{plain: plain(s)}
	if s.Err != nil {
		out.Error = s.Err.Error()
	}
	if s.Job != nil {
		j := ToJSON(s.Job)
		out.Job = &j
	}
	return json.Marshal(out)
}

// Step returns the result of the step called name.
func (r *Report) Step(name string) (StepResult, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepResult{}, false
}

// OK reports whether every step SUCCEEDED.
func (r *Report) OK() bool {
	for _, s := range r.Steps {
		if s.Status != StepSucceeded {
			return false
		}
	}
	return true
}

// Count returns how many steps ended with status st.
func (r *Report) Count(st StepStatus) int {
	n := 0
	for _, s := range r.Steps {
		if s.Status == st {
			n++
		}
	}
	return n
}

// Err is the error Run returned: nil when every step SUCCEEDED.
func (r *Report) Err() error {
	if r == nil || (r.OK() && r.canceled == nil) {
		return nil
	}
	e := &PipelineError{Pipeline: r.Pipeline, Skipped: r.Count(StepSkipped), Canceled: r.canceled}
	for _, s := range r.Steps {
		if s.Status == StepFailed {
			e.Failed = append(e.Failed, s)
		}
	}
	return e
}

// PipelineError is a run that did not succeed: the steps that FAILED, how
// many were SKIPPED, and the context's error when it was cancelled.
// errors.Is sees through it to each failed step's error (ErrJobFailed, …)
// and to context.Canceled.
type PipelineError struct {
	Pipeline string
	Failed   []StepResult
	Skipped  int
	Canceled error
}

func (e *PipelineError) Error() string {
	var parts []string
	if e.Canceled != nil {
		parts = append(parts, "canceled: "+e.Canceled.Error())
	}
	for _, s := range e.Failed {
		msg := fmt.Sprintf("step %q %s", s.Name, strings.ToLower(s.Status.String()))
		if s.Err != nil {
			msg += ": " + oneLine(s.Err.Error())
		}
		parts = append(parts, msg)
	}
	if e.Skipped > 0 {
		parts = append(parts, plural(e.Skipped, "step")+" skipped")
	}
	return fmt.Sprintf("pipeline %q: %s", e.Pipeline, strings.Join(parts, "; "))
}

// Unwrap returns the failed steps' errors and the cancel cause.
func (e *PipelineError) Unwrap() []error {
	var out []error
	if e.Canceled != nil {
		out = append(out, e.Canceled)
	}
	for _, s := range e.Failed {
		if s.Err != nil {
			out = append(out, s.Err)
		}
	}
	return out
}

// String returns the summary table.
func (r *Report) String() string {
	var b strings.Builder
	_, _ = r.WriteTo(&b)
	return b.String()
}

// WriteTo writes the summary table: one row per step (status, attempts,
// jobs, bytes moved, time, and the error or the reason it did not run), then
// a totals line.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tSTATUS\tTRIES\tJOBS\tBYTES\tTIME\tDETAIL")
	for _, s := range r.Steps {
		jobs, bytes, took, detail := "-", "-", "-", s.Reason
		if len(s.JobIDs) > 0 {
			ids := make([]string, len(s.JobIDs))
			for i, id := range s.JobIDs {
				ids[i] = strconv.FormatInt(id, 10)
			}
			jobs = strings.Join(ids, ",")
		}
		if s.Job != nil {
			bytes = humanize.Bytes(s.Job.GetBytesDone())
		}
		if !s.Started.IsZero() {
			took = roundDuration(s.Duration).String()
		}
		if s.Err != nil {
			detail = s.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Status, s.Attempts, jobs, bytes, took, truncate(oneLine(detail), 160))
	}
	_ = tw.Flush() // into a strings.Builder: cannot fail
	for _, line := range strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n") {
		// An empty DETAIL leaves padding behind; trim it.
		if _, err := io.WriteString(cw, strings.TrimRight(line, " ")+"\n"); err != nil {
			return cw.n, err
		}
	}
	var counts []string
	for st := StepSucceeded; st <= StepCanceled; st++ {
		if n := r.Count(st); n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, strings.ToLower(st.String())))
		}
	}
	_, err := fmt.Fprintf(cw, "pipeline %q: %s in %s\n", r.Pipeline, strings.Join(counts, ", "), roundDuration(r.Finished.Sub(r.Started)))
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// LogEvents returns an OnEvent function that writes one line per event to
// w: attempts, job ids, job progress (at most once a second per step),
// retries and how each step ended.
func LogEvents(w io.Writer) func(Event) {
	var mu sync.Mutex
	lastProgress := map[string]time.Time{}
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		prefix := fmt.Sprintf("[%s/%s]", e.Pipeline, e.Step)
		switch e.Kind {
		case EventAttempt:
			if e.Attempt > 1 {
				fmt.Fprintf(w, "%s attempt %d\n", prefix, e.Attempt)
			} else {
				fmt.Fprintf(w, "%s started\n", prefix)
			}
		case EventJobSubmitted:
			fmt.Fprintf(w, "%s job %d submitted\n", prefix, e.JobID)
		case EventJobProgress:
			if e.Job == nil || (!IsTerminal(e.Job.GetStatus()) && e.Time.Sub(lastProgress[e.Step]) < time.Second) {
				return
			}
			lastProgress[e.Step] = e.Time
			fmt.Fprintf(w, "%s job %d %s: %s\n", prefix, e.JobID, e.Job.GetStatus(), humanize.Progress(e.Job))
		case EventRetry:
			fmt.Fprintf(w, "%s attempt %d failed: %s; retrying in %s\n", prefix, e.Attempt, oneLine(e.Err.Error()), e.Backoff)
		case EventDone:
			switch {
			case e.Reason != "":
				fmt.Fprintf(w, "%s %s: %s\n", prefix, e.Status, e.Reason)
			case e.Err != nil:
				fmt.Fprintf(w, "%s %s after %s: %s\n", prefix, e.Status, plural(e.Attempt, "attempt"), oneLine(e.Err.Error()))
			default:
				fmt.Fprintf(w, "%s %s\n", prefix, e.Status)
			}
		}
	}
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(time.Millisecond)
	default:
		return d.Round(10 * time.Millisecond)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
