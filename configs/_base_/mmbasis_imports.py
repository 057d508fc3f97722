# Every config of the zoo imports mmbasis (its backbones, heads, hooks and the checkpoint allowlist). A base of its own
# because it is the one mmbasis runtime key that mmdet's bases do not define (the others, SafeCheckpointHook,
# ReadableLogProcessor, FiniteLossHook and non-persistent training workers, are set in each config: mmengine refuses
# a key that two bases of one config define).
custom_imports = dict(imports=['mmbasis'], allow_failed_imports=False)
