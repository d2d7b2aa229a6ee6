#!/usr/bin/env bash
# On a lent GPU machine (after dev/gpu/bundle.sh here, carrying .gpu-bundle): the Triton
# kernel tests on CUDA, both benchmarks, and bf16 / float32 AMP iterations of PASA Mask
# R-CNN R-50-FPN. STEPS picks steps (default "tests site model train"; all of them took
# about 7 minutes on an H200, most of it Triton compiling). QUICK=1: a tiny CPU rehearsal.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STEPS=${STEPS:-tests site model train}
if [ -z "${QUICK:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-bundle/whl/*.whl || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  DEV=cuda; SITE=(--repeats 10); MODEL=(--repeats 5); TRAIN=(SOLVER.MAX_ITER 60)
else
  DEV=cpu; SITE=(--repeats 1 --scale 0.1 --sites stem res5 --kernel-sizes 3)
  MODEL=(--repeats 1 --height 64 --width 96 --models mask_rcnn_R_50_FPN)
  TRAIN=(SOLVER.MAX_ITER 2 INPUT.MIN_SIZE_TRAIN "(64,)" INPUT.MAX_SIZE_TRAIN 96 MODEL.DEVICE cpu)
fi
export PYTHONPATH=$PWD:$PWD/.gpu-bundle/site:/tmp/site PYTHONUNBUFFERED=1 DETECTRON2_DATASETS=/tmp/pasa_datasets
python3 -c "import sys, torch, detectron2, pasa_det; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 1

step() { [[ " $STEPS " == *" $1 "* ]]; }
if step tests && [ -z "${QUICK:-}" ]; then
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/layers/test_triton_kernel.py 2>&1 | tail -3
fi
if step site; then
  timeout 300 python3 tools/benchmark_pasa.py --device $DEV "${SITE[@]}" --output $OUT/pasa_benchmark_$DEV.json 2>&1 \
    | grep -v "^timed" | tee $OUT/pasa.log
fi
if step model; then
  timeout 200 python3 tools/benchmark_model.py --device $DEV "${MODEL[@]}" --output $OUT/model_benchmark_$DEV.json 2>&1 \
    | grep -v -i "warn" | tee $OUT/model.log
fi
if step train; then
  for precision in bfloat16 float32; do
    amp=True; [ $precision = float32 ] && amp=False
    timeout 150 python3 tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_pasa.yaml \
      MODEL.WEIGHTS "" MODEL.RESNETS.NORM BN MODEL.ROI_HEADS.NUM_CLASSES 3 INPUT.MASK_FORMAT bitmask \
      DATASETS.TRAIN '("synthetic_instances_train",)' DATASETS.TEST '()' SOLVER.IMS_PER_BATCH 4 \
      SOLVER.BASE_LR 0.005 SOLVER.WARMUP_ITERS 10 SOLVER.CLIP_GRADIENTS.ENABLED True \
      SOLVER.CLIP_GRADIENTS.CLIP_TYPE norm SOLVER.CLIP_GRADIENTS.CLIP_VALUE 5.0 SEED 0 DATALOADER.NUM_WORKERS 2 \
      SOLVER.AMP.ENABLED $amp SOLVER.AMP.PRECISION bfloat16 "${TRAIN[@]}" OUTPUT_DIR /tmp/train_$precision \
      > $OUT/train_$precision.log 2>&1
    echo "train $precision: exit $?"
    grep -E "iter: |^[A-Za-z_.]*(Error|Exception)|non-finite" $OUT/train_$precision.log | cut -c1-200 | tail -4
  done
fi
