"""The two roles and the permissions each grants.

Views check permissions, never group names, so that a superuser or a custom group
works as well. Group names are what an admin sees.
"""

CONTRIBUTOR_GROUP = "contributor"
MAINTAINER_GROUP = "maintainer"

TRIAGE_PERMISSION = "intake.triage_feedbackcase"
SUBMIT_PERMISSION = "intake.add_feedbackcase"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    CONTRIBUTOR_GROUP: [
        "intake.add_feedbackcase",
        "intake.add_casevote",
        "intake.delete_casevote",
    ],
    MAINTAINER_GROUP: [
        "intake.add_feedbackcase",
        "intake.add_casevote",
        "intake.delete_casevote",
        "intake.view_feedbackcase",
        "intake.change_feedbackcase",
        "intake.triage_feedbackcase",
        "intake.view_caseevent",
        "curation.view_datasetbatch",
        "curation.add_datasetbatch",
        "curation.change_datasetbatch",
        "curation.approve_datasetbatch",
        "curation.view_datasetversion",
        "training.view_trainingrun",
        "training.add_trainingrun",
        "training.change_trainingrun",
        "training.view_evaluation",
        "training.override_evaluation",
        "releases.view_release",
        "releases.add_release",
        "releases.publish_release",
    ],
}
