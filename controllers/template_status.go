package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// summarizeTemplate derives the Ready and Importing conditions and the Progress column from the
// pipeline's state, so they can never disagree with it.
func summarizeTemplate(t *myaasv1.DatabaseTemplate) {
	st := &t.Status
	gen := t.Generation
	latest := latestRevision(t)
	switch {
	case latest != nil && !anyReplicaReady(latest):
		setCondition(&st.Conditions, gen, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonNoReplicaReady,
			fmt.Sprintf("revision %d has no copy on a Ready node: %s", latest.Revision, replicaSummary(latest)))
	case st.LatestRevision > 0:
		setCondition(&st.Conditions, gen, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonRevisionAvailable,
			fmt.Sprintf("revision %d can be cloned", st.LatestRevision))
	default:
		msg := "no revision has been imported yet"
		reason := myaasv1.ReasonNoRevisionYet
		if st.LastFailure != nil {
			msg = fmt.Sprintf("no revision yet: the import of revision %d failed: %s", st.LastFailure.Revision, st.LastFailure.Message)
			reason = myaasv1.ReasonImportJobFailed
		}
		setCondition(&st.Conditions, gen, myaasv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	}

	ci := st.CurrentImport
	switch {
	case ci != nil:
		reason := map[myaasv1.ImportPhase]string{
			myaasv1.ImportPhaseProvisioning: myaasv1.ReasonProvisioning,
			myaasv1.ImportPhaseLoading:      myaasv1.ReasonLoading,
			myaasv1.ImportPhaseSnapshotting: myaasv1.ReasonSnapshotting,
		}[ci.Phase]
		msg := fmt.Sprintf("revision %d: %s (%s)", ci.Revision, ci.Phase, ci.Trigger)
		if ci.HoldReason != "" {
			reason, msg = ci.HoldReason, fmt.Sprintf("revision %d: %s", ci.Revision, ci.HoldMessage)
		}
		setCondition(&st.Conditions, gen, myaasv1.ConditionImporting, metav1.ConditionTrue, reason, msg)
		st.Summary = fmt.Sprintf("r%d %s", ci.Revision, ci.Phase)
		if p := ci.Progress; p != nil && p.Percent != "" {
			st.Summary += " " + p.Percent
		} else if p != nil && p.BytesDone > 0 {
			// A streamed source has no known size: the bytes loaded still show it moving.
			st.Summary += " " + resource.NewQuantity(p.BytesDone&^(1<<20-1), resource.BinarySI).String()
		}
	default:
		if c := meta.FindStatusCondition(st.Conditions, myaasv1.ConditionImporting); c == nil || c.Status == metav1.ConditionTrue {
			setCondition(&st.Conditions, gen, myaasv1.ConditionImporting, metav1.ConditionFalse, myaasv1.ReasonIdle, "no import running")
		}
		st.Summary = ""
		if st.LastFailure != nil {
			st.Summary = fmt.Sprintf("r%d failed", st.LastFailure.Revision)
		}
	}
}
