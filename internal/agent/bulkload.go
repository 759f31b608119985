package agent

import "github.com/myaas/myaas/internal/engine"

// BulkLoadOptions are the server options the import loads with, for a datadir on its volume and
// the memory limit in the environment: what a fair comparison gives another loader.
func BulkLoadOptions(eng engine.MySQLFamily, datadir string) ([]string, error) {
	logBytes, err := redoLogSize(datadir)
	if err != nil {
		return nil, err
	}
	return eng.BulkLoadOptions(bufferPoolSize(), logBytes), nil
}
