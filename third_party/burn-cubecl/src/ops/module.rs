use crate::{
    CubeBackend, CubeRuntime, FloatElement, IntElement,
    element::BoolElement,
    kernel::{self, conv::ConvTranspose2dStrategy},
};
use burn_backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn_backend::{
    Shape, TensorMetadata,
    ops::{
        AttentionModuleOptions, ConvOptions, ConvTransposeOptions, DeformConv2dBackward,
        DeformConvOptions, FloatTensorOps, InterpolateOptions, LayerNormBackward,
        MaxPool2dBackward, MaxPool2dWithIndices, ModuleOps, RotaryPairs,
        rotary::{rotary_backward_from_float_ops, rotary_fits, rotary_from_float_ops},
    },
};

impl<R, F, I, BT> ModuleOps<Self> for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    // realsyn patch (PATCHES.md): layer norm as CubeCL kernels.
    fn layer_norm(
        tensor: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        kernel::layer_norm::layer_norm(tensor, gamma, beta, epsilon)
    }

    fn layer_norm_backward(
        tensor: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
        x_grad_so_far: Option<FloatTensor<Self>>,
    ) -> LayerNormBackward<Self> {
        let shape = output_grad.shape();
        let d = shape[shape.num_dims() - 1];
        let dtype = tensor.dtype;
        // The gradient so far is added in the kernel when it matches the input.
        let (so_far, add_after) = match x_grad_so_far {
            Some(t) if t.shape() == tensor.shape() && t.dtype == dtype => (Some(t), None),
            other => (None, other),
        };
        let (mut x_grad, partials, half) =
            kernel::layer_norm::layer_norm_backward(tensor, gamma, epsilon, output_grad, so_far);
        if let Some(so_far) = add_after {
            x_grad = Self::float_add(so_far, x_grad);
        }
        // The cubes' partial sums (f32) summed: gamma's gradient, then beta's, each a
        // view of the sums in the tensor's type (cast once).
        let sums = Self::float_sum_dim(partials, 0);
        let mut sums = Self::float_reshape(sums, Shape::from([2 * half]));
        if dtype != burn_backend::DType::F32 {
            sums = Self::float_cast(sums, dtype.into());
        }
        let part =
            |range: core::ops::Range<usize>| Self::float_slice(sums.clone(), &[range.into()]);
        LayerNormBackward::new(x_grad, part(0..d), part(half..half + d))
    }

    // realsyn patch (PATCHES.md): a linear layer's bias added by the kernel that
    // applies the GELU or the residual addition after it.
    fn bias_gelu(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        match kernel::bias::fits(&x, &bias, &[]) {
            true => kernel::bias::bias_gelu(x, bias),
            false => burn_backend::ops::linear::bias_gelu_from_float_ops::<Self>(x, bias),
        }
    }

    fn bias_gelu_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match kernel::bias::fits(&x, &bias, &[&output_grad]) {
            true => kernel::bias::bias_gelu_backward(x, bias, output_grad),
            false => burn_backend::ops::linear::bias_gelu_backward_from_float_ops::<Self>(
                x,
                bias,
                output_grad,
            ),
        }
    }

    // realsyn patch (PATCHES.md): a SwiGLU's gated activation with its biases, one
    // kernel each way.
    fn bias_swiglu(packed: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        match kernel::bias::swiglu_fits(&packed, &bias, None) {
            true => kernel::bias::bias_swiglu(packed, bias),
            false => burn_backend::ops::linear::bias_swiglu_from_float_ops::<Self>(packed, bias),
        }
    }

    fn bias_swiglu_backward(
        packed: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match kernel::bias::swiglu_fits(&packed, &bias, Some(&output_grad)) {
            true => kernel::bias::bias_swiglu_backward(packed, bias, output_grad),
            false => burn_backend::ops::linear::bias_swiglu_backward_from_float_ops::<Self>(
                packed,
                bias,
                output_grad,
            ),
        }
    }

    // realsyn patch (PATCHES.md): a rotary embedding's rotation, one kernel each way.
    fn rotary(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
        pairs: RotaryPairs,
    ) -> FloatTensor<Self> {
        match rotary_fits(&x, &cos, &signed_sin) {
            true => kernel::rotary::rotary(x, cos, signed_sin, pairs, false),
            false => rotary_from_float_ops::<Self>(x, cos, signed_sin, pairs),
        }
    }

    fn rotary_backward(
        output_grad: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
        pairs: RotaryPairs,
    ) -> FloatTensor<Self> {
        match rotary_fits(&output_grad, &cos, &signed_sin) {
            true => kernel::rotary::rotary(output_grad, cos, signed_sin, pairs, true),
            false => rotary_backward_from_float_ops::<Self>(output_grad, cos, signed_sin, pairs),
        }
    }

    fn bias_residual(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match kernel::bias::fits(&x, &bias, &[&residual]) {
            true => kernel::bias::bias_residual(x, bias, residual),
            false => {
                burn_backend::ops::linear::bias_residual_from_float_ops::<Self>(x, bias, residual)
            }
        }
    }

    // realsyn patch (PATCHES.md): attention's softmax and its backward as one
    // kernel each.
    fn attention_softmax(
        scores: FloatTensor<Self>,
        scale: f64,
        causal: bool,
        _maskable: bool,
    ) -> FloatTensor<Self> {
        kernel::softmax::softmax(scores, scale, causal)
    }

    fn attention_softmax_backward(
        softmax: FloatTensor<Self>,
        softmax_grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        kernel::softmax::softmax_backward(softmax, softmax_grad, scale)
    }

    // realsyn patch (PATCHES.md): the output's gradient usually arrives as a view
    // (heads merged after attention, `[batch, queries, heads * dim]`, seen back as
    // `[batch, heads, queries, dim]`), a layout the matmul kernels cannot read (a
    // batch stride below the row stride): made contiguous once here, where its uses
    // in the backward copied it (four copies per attention, counted on lavapipe).
    fn attention_backward(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        attn_bias: Option<FloatTensor<Self>>,
        options: AttentionModuleOptions,
        output_grad: FloatTensor<Self>,
    ) -> burn_backend::ops::attention::AttentionBackward<Self> {
        burn_backend::ops::attention::attention_backward_from_float_ops::<Self>(
            query,
            key,
            value,
            mask,
            attn_bias,
            options,
            kernel::into_contiguous(output_grad),
        )
    }

    fn conv1d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_forward::<R, 1>(x, weight, bias, options, Default::default()).unwrap()
    }

    fn conv1d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_data_backward(
            output_grad,
            weight,
            x.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn conv1d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<1>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_weight_backward::<R, 1>(
            x,
            output_grad,
            weight.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_forward::<R, 2>(x, weight, bias, options, Default::default()).unwrap()
    }

    fn conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_data_backward(
            output_grad,
            weight,
            x.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_weight_backward::<R, 2>(
            x,
            output_grad,
            weight.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn deform_conv2d(
        x: FloatTensor<Self>,
        offset: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        bias: Option<FloatTensor<Self>>,
        options: DeformConvOptions<2>,
    ) -> FloatTensor<Self> {
        kernel::conv::deform_conv2d(x, offset, weight, mask, bias, options).unwrap()
    }

    fn deform_conv2d_backward(
        x: FloatTensor<Self>,
        offset: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        mask: Option<FloatTensor<Self>>,
        bias: Option<FloatTensor<Self>>,
        output_grad: FloatTensor<Self>,
        options: DeformConvOptions<2>,
    ) -> DeformConv2dBackward<Self> {
        let (x, o, w, m, b) = kernel::conv::deform_conv2d_backward(
            x,
            offset,
            weight,
            mask,
            bias,
            output_grad,
            options,
        )
        .unwrap();
        DeformConv2dBackward::new(x, o, w, m, b)
    }

    fn conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_forward::<R, 3>(x, weight, bias, options, Default::default()).unwrap()
    }

    fn conv3d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_data_backward(
            output_grad,
            weight,
            x.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn conv3d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<3>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_weight_backward::<R, 3>(
            x,
            output_grad,
            weight.shape(),
            options,
            Default::default(),
        )
        .unwrap()
    }

    fn conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_transpose2d(x, weight, bias, options, ConvTranspose2dStrategy::default())
            .unwrap()
    }

    fn conv_transpose3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvTransposeOptions<3>,
    ) -> FloatTensor<Self> {
        kernel::conv::conv_transpose3d(x, weight, bias, options).expect("Kernel to never fail")
    }

    fn avg_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        kernel::pool::avg_pool2d(
            x,
            kernel_size,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
        )
    }

    fn avg_pool2d_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        kernel::pool::avg_pool2d_backward(
            x,
            grad,
            kernel_size,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
        )
    }

    fn max_pool2d(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        kernel::pool::max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
    }

    fn max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> MaxPool2dWithIndices<Self> {
        let (output, indices) = kernel::pool::max_pool2d_with_indices(
            x,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
            I::dtype(),
        );

        MaxPool2dWithIndices::new(output, indices)
    }

    fn max_pool2d_with_indices_backward(
        x: FloatTensor<Self>,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
        output_grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> MaxPool2dBackward<Self> {
        MaxPool2dBackward::new(kernel::pool::max_pool2d_with_indices_backward(
            x,
            output_grad,
            indices,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
        ))
    }

    fn adaptive_avg_pool2d(x: FloatTensor<Self>, output_size: [usize; 2]) -> FloatTensor<Self> {
        kernel::pool::adaptive_avg_pool2d(x, output_size)
    }

    fn adaptive_avg_pool2d_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        kernel::pool::adaptive_avg_pool2d_backward(x, grad)
    }

    fn interpolate(
        x: FloatTensor<Self>,
        output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> FloatTensor<Self> {
        kernel::interpolate::interpolate(x, output_size, options)
    }

    fn interpolate_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        output_size: [usize; 2],
        options: InterpolateOptions,
    ) -> FloatTensor<Self> {
        kernel::interpolate::interpolate_backward(x, grad, output_size, options)
    }

    fn attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        attn_bias: Option<FloatTensor<Self>>,
        options: AttentionModuleOptions,
    ) -> FloatTensor<Self> {
        // Fall back to naive attention for features the flash kernel doesn't support.
        if attn_bias.is_some() || options.softcap.is_some() || options.scale.is_some() {
            return burn_backend::ops::attention::attention_fallback::<Self>(
                query, key, value, mask, attn_bias, options,
            );
        }

        // realsyn patch (PATCHES.md): a flash kernel named by `REALSYN_ATTENTION` that
        // cannot run this one (a setup error, raised before anything is launched) leaves
        // it to the decomposition, said once.
        let strategy = kernel::attention::AttentionStrategy::default();
        let flash = !matches!(
            strategy,
            kernel::attention::AttentionStrategy::Fallback
                | kernel::attention::AttentionStrategy::Autotune
        );
        let inputs = flash.then(|| (query.clone(), key.clone(), value.clone(), mask.clone()));
        match kernel::attention::attention(
            query,
            key,
            value,
            mask,
            attn_bias,
            options,
            strategy.clone(),
        ) {
            Ok(out) => out,
            Err(err) => {
                let Some((query, key, value, mask)) = inputs else {
                    panic!("Burn's attention decomposition failed: {err:?}")
                };
                // Formatted only when said: a fallback may recur at every attention.
                let why = || {
                    format!(
                        "REALSYN_ATTENTION: {strategy:?} cannot run attention over {:?} here ({err:?})",
                        query.meta.shape()
                    )
                };
                if kernel::strict_kernels() {
                    panic!("{} and REALSYN_KERNELS_STRICT is set", why())
                }
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("{}; the decomposition runs it (said once)", why()));
                burn_backend::ops::attention::attention_fallback::<Self>(
                    query, key, value, mask, None, options,
                )
            }
        }
    }

    fn has_ctc_loss_backward() -> bool {
        true
    }

    fn ctc_loss(
        log_probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        input_lengths: IntTensor<Self>,
        target_lengths: IntTensor<Self>,
        blank: usize,
    ) -> FloatTensor<Self> {
        kernel::ctc::ctc_loss(log_probs, targets, input_lengths, target_lengths, blank)
    }

    fn ctc_loss_backward(
        log_probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        input_lengths: IntTensor<Self>,
        target_lengths: IntTensor<Self>,
        grad_loss: FloatTensor<Self>,
        blank: usize,
    ) -> FloatTensor<Self> {
        let (log_alpha_full, log_beta_full, nll) = kernel::ctc::ctc_alpha_beta(
            log_probs.clone(),
            targets.clone(),
            input_lengths.clone(),
            target_lengths,
            blank,
        );
        burn_backend::ops::ctc::ctc_grad_from_alpha_beta_default::<Self>(
            log_probs,
            targets,
            input_lengths,
            grad_loss,
            log_alpha_full,
            log_beta_full,
            nll,
            blank,
        )
    }

    fn rfft(
        signal: FloatTensor<Self>,
        dim: usize,
        n: Option<usize>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        kernel::fft::rfft(signal, dim, n)
    }

    fn irfft(
        spectrum_re: FloatTensor<Self>,
        spectrum_im: FloatTensor<Self>,
        dim: usize,
        n: Option<usize>,
    ) -> FloatTensor<Self> {
        kernel::fft::irfft(spectrum_re, spectrum_im, dim, n)
    }
}
