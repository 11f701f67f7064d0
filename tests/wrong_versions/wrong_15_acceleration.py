from wrong_versions.runner import WrongVersion

WRONG = [
    WrongVersion("naive_matmul", "calls BLAS", '''
def naive_matmul(a, b):
    a, b = np.asarray(a), np.asarray(b)
    _check_2d(a, b, "naive_matmul")
    return (a @ b).astype(np.float32)
'''),
]
