package builder

import (
	"fmt"
	"hash/fnv"

	"k8s.io/apimachinery/pkg/types"
)

// Names of the children. They are derived from the parent's name and the revision number only, so
// that a restarted manager finds the objects it created instead of creating them again.

// TemplatePVCName is the volume revision n of template is imported into.
func TemplatePVCName(template string, n int32) string { return fmt.Sprintf("%s-r%d", template, n) }

// ImportJobName is the Job of one attempt at loading revision n; attempts count from 1.
func ImportJobName(template string, n, attempt int32) string {
	if attempt <= 1 {
		return fmt.Sprintf("%s-import-r%d", template, n)
	}
	return fmt.Sprintf("%s-import-r%d-a%d", template, n, attempt)
}

// SnapshotName is the VolumeSnapshot of revision n.
func SnapshotName(template string, n int32) string { return fmt.Sprintf("%s-r%d", template, n) }

// RefreshCronJobName is the CronJob whose Jobs ask for a new revision.
func RefreshCronJobName(template string) string { return template + "-refresh" }

// CredentialsSecretName is the instance's Secret.
func CredentialsSecretName(instance string) string { return instance + "-credentials" }

// AdminSecretName is the operator's own Secret of an instance: root's password and the admin
// account's, which the user's Secret never holds.
func AdminSecretName(instance string) string { return instance + "-admin" }

// InstanceClaimName is the StatefulSet volumeClaimTemplate name. It carries part of the instance's
// UID and the reset count so that a PVC left behind by an earlier instance of the same name, or by
// the data before a reset, can never be adopted.
func InstanceClaimName(uid types.UID, resets int32) string {
	short := string(uid)
	if len(short) > 8 {
		short = short[:8]
	}
	if resets == 0 {
		return "data-" + short
	}
	return fmt.Sprintf("data-%s-%d", short, resets)
}

// InstancePVCName is the PVC the StatefulSet controller creates for the claim template.
func InstancePVCName(instance string, uid types.UID, resets int32) string {
	return fmt.Sprintf("%s-%s-0", InstanceClaimName(uid, resets), instance)
}

// InstancePodName is the only pod of the instance's StatefulSet.
func InstancePodName(instance string) string { return instance + "-0" }

// ServerID gives each instance its own server_id, derived from its UID so it is stable across restarts.
func ServerID(uid types.UID) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(uid))
	id := h.Sum32() & 0x7fffffff
	if id == 0 {
		id = 1
	}
	return id
}
