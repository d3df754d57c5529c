import subprocess
import sys


def test_inference_modules_load_no_torch_and_help_works():
    code = (
        "import sys, argparse\n"
        "import appliance.inference, appliance.infer_cli, appliance.series, appliance.bundle, appliance.crop\n"
        "import appliance.postprocess, appliance.sliding_window, appliance.engines.select\n"
        "import appliance.engines.onnxruntime, appliance.engines.tensorrt, appliance.engines.triton\n"
        "p = argparse.ArgumentParser(prog='wbspine'); appliance.infer_cli.register(p.add_subparsers())\n"
        "assert 'INPUT' in p._subparsers._group_actions[0].choices['infer'].format_help()\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m == 'tensorrt']\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
