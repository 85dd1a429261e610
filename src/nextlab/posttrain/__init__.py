"""Post-training: supervised fine-tuning and policy gradient under reward schemes.

Import the pieces from their modules (`nextlab.posttrain.rewards`, `.policy_gradient`, `.sft`,
`.stage`); this package stays import-light.
"""
