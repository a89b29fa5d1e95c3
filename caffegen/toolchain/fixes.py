"""The fix-set applied to the brocolli-caffe 9.0.2 source tree before it is built.

Data, not code: each fix names a file, the exact text it expects and its replacement, so a source
that drifts fails loudly instead of building something half-patched. The build cache key hashes
this file, so changing a fix rebuilds.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    path: str
    old: str
    new: str
    why: str


CPU_FIXES: tuple[Fix, ...] = (
    Fix("src/caffe/net.cpp", '#include "caffe/test/test_caffe_main.hpp"\n', "",
        "unused include that needs gtest"),
    Fix("include/caffe/layers/video_data_layer.hpp", "#include <opencv2/opencv.hpp>",
        "#include <opencv2/core.hpp>\n#include <opencv2/videoio.hpp>",
        "the umbrella header pulls calib3d, dnn, ... which are not installed"),
    Fix("src/caffe/util/io.cpp", "CV_LOAD_IMAGE_COLOR :\n    CV_LOAD_IMAGE_GRAYSCALE);",
        "cv::IMREAD_COLOR :\n    cv::IMREAD_GRAYSCALE);", "OpenCV 4 removed the C constants"),
    Fix("src/caffe/layers/window_data_layer.cpp", "CV_LOAD_IMAGE_COLOR", "cv::IMREAD_COLOR",
        "OpenCV 4 removed the C constants"),
    Fix("src/caffe/layers/video_data_layer.cpp", "CV_CAP_PROP_FRAME_COUNT", "cv::CAP_PROP_FRAME_COUNT",
        "OpenCV 4 removed the C constants"),
    Fix("src/caffe/layers/video_data_layer.cpp", "CV_CAP_PROP_POS_FRAMES", "cv::CAP_PROP_POS_FRAMES",
        "OpenCV 4 removed the C constants"),
    Fix("src/caffe/util/bbox_util.cpp", "CV_FILLED", "cv::FILLED", "OpenCV 4 removed the C constants"),
    Fix("src/caffe/util/bbox_util.cpp", "CV_FOURCC('D', 'I', 'V', 'X')",
        "cv::VideoWriter::fourcc('D', 'I', 'V', 'X')", "OpenCV 4 removed the C constants"),
    Fix("src/caffe/util/im_transforms.cpp", "#if CV_VERSION_MAJOR == 3", "#if CV_VERSION_MAJOR >= 3",
        "the compatibility block is needed on OpenCV 4 too"),
    Fix("src/caffe/util/im_transforms.cpp", "CV_BGR2HSV", "cv::COLOR_BGR2HSV", "OpenCV 4 removed the C constants"),
    Fix("src/caffe/util/im_transforms.cpp", "CV_BGR2Lab", "cv::COLOR_BGR2Lab", "OpenCV 4 removed the C constants"),
    Fix("python/caffe/io.py", "from scipy.ndimage import zoom\n",
        "from scipy.ndimage import zoom\nfrom skimage.transform import resize\n",
        "resize_image() calls resize, which was never imported"),
    Fix("python/caffe/io.py", "as_grey=", "as_gray=", "scikit-image renamed the argument"),
    Fix("tools/caffe.cpp", """    solver->Restore(FLAGS_snapshot.c_str());
  }
""", """    solver->Restore(FLAGS_snapshot.c_str());
  } else if (FLAGS_weights.size()) {
    std::vector<std::string> model_names;
    boost::split(model_names, FLAGS_weights, boost::is_any_of(","));
    for (int i = 0; i < model_names.size(); ++i) {
      LOG(INFO) << "Finetuning from " << model_names[i];
      solver->net()->CopyTrainedLayersFrom(model_names[i]);
      for (int j = 0; j < solver->test_nets().size(); ++j) {
        solver->test_nets()[j]->CopyTrainedLayersFrom(model_names[i]);
      }
    }
  }
""", "`caffe train -weights` was accepted and silently ignored: BVLC's fine-tuning copy restored"),
    Fix("src/caffe/net.cpp", """      DLOG(INFO) << "Ignoring source layer " << source_layer_name;
      continue;
    }
    DLOG(INFO) << "Copying source layer " << source_layer_name;""", """      LOG(INFO) << "Ignoring source layer " << source_layer_name;
      continue;
    }
    LOG(INFO) << "Copying source layer " << source_layer_name;""",
        "a fine-tuning log says which layers it copied and which it left to start fresh"),
    Fix("src/caffe/data_transformer.cpp", """  if (has_mean_file) {
    CHECK_EQ(cv_cropped_image.rows, data_mean_.height());
    CHECK_EQ(cv_cropped_image.cols, data_mean_.width());
  }
  CHECK(cv_cropped_image.data);""", """  CHECK(cv_cropped_image.data);""",
        "an image read by ImageData and cropped smaller than its mean_file (every ImageNet net: a 256x256 mean, a "
        "227 crop) was refused, though the loop below subtracts the mean at the crop's offset as BVLC's does"),
)

GPU_FIXES: tuple[Fix, ...] = ()

# Files removed before the build: a stale protoc output that would shadow the fresh one.
REMOVE: tuple[str, ...] = ("include/caffe/proto/caffe.pb.h",)


def fixes_for(gpu: bool = False) -> tuple[Fix, ...]:
    """The fixes a build needs: the CPU set, plus the CUDA set for GPU builds."""
    return CPU_FIXES + (GPU_FIXES if gpu else ())


def apply(root, fixes=CPU_FIXES, remove=REMOVE) -> list[str]:
    """Apply ``fixes`` to the tree at ``root``; return one line per change. Raise if a fix no longer matches."""
    from pathlib import Path

    root = Path(root)
    done = []
    for fix in fixes:
        path = root / fix.path
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if fix.old not in text:
            raise RuntimeError(f"caffe source fix no longer matches: {fix.path}: {fix.old!r}")
        path.write_text(text.replace(fix.old, fix.new), encoding="utf-8", errors="surrogateescape")
        done.append(f"{fix.path}: {fix.why}")
    for rel in remove:
        (root / rel).unlink(missing_ok=True)
        done.append(f"{rel}: removed")
    return done
