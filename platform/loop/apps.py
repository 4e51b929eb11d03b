from django.apps import AppConfig


class LoopConfig(AppConfig):
    """The whole loop at once: project-level orchestration that uses every stage and that no stage uses.

    It holds no models; its `demo` command (the main job) runs intake -> curation ->
    training -> release on the bundled cases. Keeping it here keeps the stages layered:
    intake, the first stage, depends on none of the later ones.
    """

    name = "loop"
    verbose_name = "The co-training loop"
