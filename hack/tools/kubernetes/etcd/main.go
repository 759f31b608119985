// Command etcd is the etcd server, built from its Go module so that envtest and the local cluster
// need no download from anywhere but the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
