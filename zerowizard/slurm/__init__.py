"""SLURM support: host-list expansion, sbatch export, launch command lines (pure Python)."""
