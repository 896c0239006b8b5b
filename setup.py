"""Builds the C storage engine in csrc/ into pyraftkv._native with cffi (out-of-line API mode)."""

from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
