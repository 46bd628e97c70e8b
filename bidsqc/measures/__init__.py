r"""Classical image-quality measures (IQMs) of a T1w or FLAIR image in template space.

Every image reaches this module reoriented to RAS, resampled to 2 mm and affinely registered to
the MNI ICBM152 2009c template (a 96 x 112 x 96 grid). The template's brain mask and tissue
probability maps stand in for the subject's own: with an affine registration they are only
approximately right, so tissue statistics use conservative masks (probability > 0.9, white
matter also eroded by one voxel). Tissue *differences* are taken in absolute value, so that every
measure reads the same way for T1w and for FLAIR (where white matter is darker than grey matter).

All measures are pure NumPy/SciPy functions that return a plain :class:`float`. A measure that
cannot be computed (empty mask, constant image...) returns NaN and logs why on the
``bidsqc.measures`` logger. Skull-stripped images (background exactly zero) are a normal input:
every measure has a documented finite convention for them.

Masks and conventions
---------------------
- *Tissues*: grey matter is the template GM probability > 0.9; white matter the WM probability
  > 0.9 eroded by one voxel. Their mean and SD are robust (median and 1.4826 x MAD), because
  template masks under an affine registration still catch ventricles and neighbouring tissue.
- *Head*: voxels above 0.1 x the median intensity in the template brain mask, largest
  component, holes filled. *Air*: the non-zero voxels more than 8 mm away from the head; exact
  zeros are fill from outside the field of view or a masked-out background and carry no noise.
  When the air is under 1 % of the grid (skull-stripped or scanner-masked backgrounds) there is
  taken to be no air: CNR then uses :math:`\sigma_{air} = 0` and FBER reaches its cap,
  :math:`10^6`.
- *Brain*: :func:`estimate_brain_mask` finds the subject's brain in the registered image alone;
  ``mask_dice`` and ``mask_hd95_mm`` compare it with the template brain mask.
- EFC and FBER depend on how much of the grid is head: compare skull-stripped images with
  skull-stripped ones and full-head images with full-head ones.

Catalogue
---------
============ ============================================== ============ ==========================
measure      responds to                                    better       reference
============ ============================================== ============ ==========================
snr          noise in grey and white matter                 higher       Dietrich et al. 2007,
                                                                         doi:10.1002/jmri.20969
cnr          noise and loss of grey/white contrast          higher       Magnotta & Friedman 2006,
                                                                         doi:10.1007/s10278-006-0264-x
cjv          noise, bias field, loss of contrast            lower        Ganzetti et al. 2016,
                                                                         doi:10.3389/fninf.2016.00010
efc          ghosting and blurring from head motion         lower        Atkinson et al. 1997,
                                                                         doi:10.1109/42.650886
fber         signal leaking into the background (ghosts)    higher       Shehzad et al. 2015,
                                                                         doi:10.3389/conf.fninf.2015.91.00047
wm2max       white matter squeezed by a few hot voxels      higher       Esteban et al. 2017,
                                                                         doi:10.1371/journal.pone.0184661
inu_med      overall scale of the bias field                closer to 1  Tustison et al. 2010,
                                                                         doi:10.1109/TMI.2010.2046908
inu_range    spatial intensity non-uniformity (bias field)  lower        Tustison et al. 2010,
                                                                         doi:10.1109/TMI.2010.2046908
fwhm_avg     blurring (motion, thick slices, filtering)     lower        Forman et al. 1995,
                                                                         doi:10.1002/mrm.1910330508
mask_dice    registration failure (brain off the template)  higher       Dice 1945,
                                                                         doi:10.2307/1932409
mask_hd95_mm registration failure, local misfit             lower        Taha & Hanbury 2015,
                                                                         doi:10.1186/s12880-015-0068-x
nmi          registration failure, wrong or corrupt image   higher       Studholme et al. 1999,
                                                                         doi:10.1016/S0031-3203(98)00091-0
rereg_mm     misregistration (shift, rotation)              lower        Jenkinson et al. 2002,
                                                                         doi:10.1006/nimg.2002.1132
============ ============================================== ============ ==========================
"""
