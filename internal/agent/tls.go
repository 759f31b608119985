package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// tlsOptions turn on TLS with the mounted certificate Secret. The server reads the files once, at
// start: a renewed certificate is served from the next start on, and a running server is never
// restarted for it. A missing file fails the start with its name rather than leaving a server
// that clients cannot verify.
func tlsOptions(eng engine.MySQLFamily, o startOptions) ([]string, error) {
	files, err := tlsFiles(o)
	if err != nil || files == nil {
		return nil, err
	}
	return eng.TLSOptions(*files, o.requireSecureTransport), nil
}

// tlsFiles are the certificate Secret's files, checked; nil when the instance serves no TLS.
func tlsFiles(o startOptions) (*engine.TLSFiles, error) {
	if o.tlsDir == "" {
		if o.requireSecureTransport {
			return nil, errors.New("--" + agentapi.FlagRequireSecureTransport + " needs --" + agentapi.FlagTLSDir)
		}
		return nil, nil
	}
	files := engine.TLSFiles{
		Cert: filepath.Join(o.tlsDir, agentapi.TLSCertKey),
		Key:  filepath.Join(o.tlsDir, agentapi.TLSPrivateKeyKey),
		CA:   filepath.Join(o.tlsDir, agentapi.TLSCAKey),
	}
	for _, f := range []string{files.Cert, files.Key, files.CA} {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("TLS: the certificate Secret has no %s: %w", filepath.Base(f), err)
		}
		if st.Size() == 0 {
			return nil, fmt.Errorf("TLS: %s is empty in the certificate Secret", filepath.Base(f))
		}
	}
	return &files, nil
}
