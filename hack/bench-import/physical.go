package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// physicalResult is the agent on a mariadb-backup stream, against what the volume can take.
type physicalResult struct {
	took         time.Duration
	datadirBytes int64
	streamBytes  int64
	// limit is the volume's sequential write speed, bytes per second.
	limit float64
}

// Row 6: the agent on a mariadb-backup stream of the same data.
func init() {
	extraMethods = append(extraMethods, method{"6", "myaas agent, mariadb-backup stream", func(b *bench) (string, time.Duration, error) {
		r, err := b.runPhysical()
		if err != nil {
			return "", 0, err
		}
		b.physical = &r
		return filepath.Join(b.dir, "physical", "data"), r.took, nil
	}})
}

// runPhysical times the agent turning a mariadb-backup xbstream of the data into a prepared,
// cleanly shut down datadir, as the import Job does. The backup is taken, before the clock
// starts, from a server on a datadir an earlier row loaded (or one loaded for it, untimed).
func (b *bench) runPhysical() (physicalResult, error) {
	var r physicalResult
	loaded := filepath.Join(b.dir, "agent-file", "data")
	if _, err := os.Stat(loaded); err != nil {
		fmt.Println("    loading the data to back up (not timed) ...")
		if loaded, _, err = b.runAgent("agent-file", "dump.sql", 0); err != nil {
			return r, err
		}
	}
	stream := filepath.Join(b.dir, "backup.xb")
	fmt.Println("    mariadb-backup --backup --stream=xbstream of the loaded data (not timed) ...")
	if err := takeBackup(loaded, stream); err != nil {
		return r, err
	}
	if st, err := os.Stat(stream); err == nil {
		r.streamBytes = st.Size()
	}
	datadir, took, err := b.runAgent("physical", "backup.xb", 0)
	if err != nil {
		return r, err
	}
	r.took = took
	// The redo log is preallocated at the size the import gives it: counting it would flatter
	// the rate with bytes nobody wrote.
	if r.datadirBytes, err = dataBytes(datadir); err != nil {
		return r, err
	}
	_ = os.Remove(stream)
	if r.limit, err = sequentialWriteSpeed(filepath.Dir(datadir), 1<<30); err != nil {
		return r, err
	}
	return r, nil
}

// dataBytes sums the sizes of a datadir's files but its redo log.
func dataBytes(datadir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(datadir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), "ib_logfile") {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}

// takeBackup starts a server on datadir and streams its backup into file.
func takeBackup(datadir, file string) error {
	socket := filepath.Join(filepath.Dir(datadir), "backup.sock")
	srv := exec.Command("/usr/sbin/mariadbd", append([]string{"--no-defaults", "--datadir=" + datadir, "--socket=" + socket,
		"--skip-networking", "--innodb-use-native-aio=0", "--log-error=" + socket + ".log"}, rootUser()...)...)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if err := waitSocket(socket); err != nil {
		return err
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	backup := exec.Command("mariadb-backup", "--no-defaults", "--backup", "--stream=xbstream", "--socket="+socket,
		"--user=root", "--target-dir="+filepath.Join(filepath.Dir(datadir), "backup-tmp"))
	var msg bytes.Buffer
	backup.Stdout, backup.Stderr = out, &msg
	if err := backup.Run(); err != nil {
		return fmt.Errorf("mariadb-backup: %w: %s", err, tailOf(msg.Bytes(), 2000))
	}
	if err := out.Close(); err != nil {
		return err
	}
	if msg, err := exec.Command("mariadb-admin", "--no-defaults", "--socket="+socket, "-uroot", "shutdown").CombinedOutput(); err != nil {
		return fmt.Errorf("shutdown: %w: %s", err, msg)
	}
	_ = srv.Wait()
	return nil
}

// sequentialWriteSpeed writes size bytes of incompressible data into dir and syncs them, three
// times: the best rate is the most a physical import, which writes through the page cache too,
// could write into this volume per second.
func sequentialWriteSpeed(dir string, size int64) (float64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	path := filepath.Join(dir, "write-speed")
	defer os.Remove(path)
	buf := make([]byte, 4<<20)
	if _, err := rand.Read(buf); err != nil {
		return 0, err
	}
	best := 0.0
	for range 3 {
		f, err := os.Create(path)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		for written := int64(0); written < size; written += int64(len(buf)) {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return 0, err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, err
		}
		best = max(best, float64(size)/time.Since(start).Seconds())
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return best, nil
}

func printPhysical(r physicalResult) {
	mbps := float64(r.datadirBytes) / 1e6 / r.took.Seconds()
	fmt.Printf("row 6 in MB/s of datadir: %.1f (%.0f MB without the redo log, from a %.0f MB stream; target >= 100)\n",
		mbps, float64(r.datadirBytes)/1e6, float64(r.streamBytes)/1e6)
	fmt.Printf("physical limit, sequential write to the volume (best of 3: 1 GiB written and fsync'd): %.1f MB/s; row 6 reaches %.0f%% of it\n",
		r.limit/1e6, 100*mbps*1e6/r.limit)
}

func rootUser() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

func tailOf(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
