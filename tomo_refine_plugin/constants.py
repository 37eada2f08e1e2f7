"""Names shared by the Scipion layer: output attribute names, file names under a run's extra/ folder,
and the extra attributes this plugin stores on Scipion objects."""

# Files a protocol writes in its extra/ folder (RELION 5 names, so the folder is a RELION job folder).
IN_TOMOGRAMS_STAR = "in_tomograms.star"
IN_PARTICLES_STAR = "in_particles.star"
IN_OPTIMISATION_SET_STAR = "in_optimisation_set.star"
IN_TILT_SERIES_DIR = "in_tilt_series"
OUT_TOMOGRAMS_STAR = "tomograms.star"
OUT_PARTICLES_STAR = "particles.star"
OUT_OPTIMISATION_SET_STAR = "optimisation_set.star"
OUT_TRAJECTORIES_STAR = "motion.star"

# Extra attribute on output TiltImages: RELION's XTilt (deg), which a 2D transform cannot hold.
ATTR_X_TILT = "_tomoRefineXTilt"
# Extra attribute on output Coordinate3D / pseudo-subtomograms: RELION particle name (<tomo>/<k>).
ATTR_PARTICLE_NAME = "_tomoRefineParticleName"

# Output attribute names (part of the public interface: workflows refer to them by name).
OUT_TILT_SERIES = "refinedTiltSeries"
OUT_COORDINATES = "refinedCoordinates"
OUT_OPTIMISATION_SET = "optimisationSet"
OUT_REPORT = "alignReport"
OUT_PSEUDO_SUBTOMOS = "pseudoSubtomograms"
OUT_CTF = "outputSetOfCTFTomoSeries"

# Plugin variable: default engine thread count per step.
TOMOREFINE_THREADS = "TOMOREFINE_THREADS"
