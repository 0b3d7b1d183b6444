package sdk

// Jobs is the job-service client; see Client.Jobs. The job calls arrive with
// the job master.
type Jobs struct{}

func (j *Jobs) close() {}
