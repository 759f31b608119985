package builder

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// TestEveryChildIsLabelledManaged: the manager's cache selects on LabelManagedBy, so an object
// without it, or a pod or claim whose template lacks it, would be invisible to the controllers.
func TestEveryChildIsLabelledManaged(t *testing.T) {
	inst := instance(nil)
	tmpl := template(func(d *myaasv1.DatabaseTemplate) { d.Spec.Refresh = &myaasv1.RefreshSpec{Schedule: "@daily"} })
	eng := mustEngine(t, "mariadb")
	params := StatefulSetParams{
		Engine: eng, Image: "mariadb:11.4", AgentImage: "myaas:v1", Revision: 1, SnapshotName: "shop-r1",
		RestoreSize: resource.MustParse("1Gi"), StorageClassName: ptr.To("zfs"),
	}
	sts := InstanceStatefulSet(inst, params)
	job, err := ImportJob(tmpl, 1, 1, "myaas:v1")
	if err != nil {
		t.Fatal(err)
	}
	cron := RefreshCronJob(tmpl, "myaas:v1")
	for name, labels := range map[string]map[string]string{
		"credentials Secret":         CredentialsSecret(inst, eng, Passwords{}).Labels,
		"instance Service":           InstanceService(inst, eng).Labels,
		"instance StatefulSet":       sts.Labels,
		"instance pod template":      sts.Spec.Template.Labels,
		"instance claim template":    sts.Spec.VolumeClaimTemplates[0].Labels,
		"instance clone PVC":         InstanceClaim(inst, params).Labels,
		"template PVC":               TemplatePVC(tmpl, 1).Labels,
		"import Job":                 job.Labels,
		"import pod template":        job.Spec.Template.Labels,
		"revision VolumeSnapshot":    TemplateSnapshot(tmpl, 1).Labels,
		"refresh CronJob":            cron.Labels,
		"refresh Job template":       cron.Spec.JobTemplate.Labels,
		"refresh Job's pod template": cron.Spec.JobTemplate.Spec.Template.Labels,
	} {
		if labels[myaasv1.LabelManagedBy] != myaasv1.ManagedBy {
			t.Errorf("%s: labels %v lack %s=%s", name, labels, myaasv1.LabelManagedBy, myaasv1.ManagedBy)
		}
	}
}
